//! The command line: `easel serve`, `easel worker`, `easel generate`, `easel models
//! list|pull|optimize|quantize`, `easel db copy`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::config::Config;
use crate::imaging::diffusion::npy;
use crate::imaging::diffusion::preview::PreviewRate;
use crate::imaging::diffusion::prompt::LongPrompts;
use crate::imaging::registry::{ModelEntry, Registry};
use crate::imaging::request::{self, ImageParams, Quality, SizeChoice, SizePolicy};
use crate::imaging::{encode, hub, int8, ImageEngine};
use crate::jobs::prepare::{prepare_edit, EditUpload};
use crate::jobs::{CallerInfo, JobEvent, JobOrder, JobOrigin, JobService, JobSettings};
use crate::store::{ImageBlob, JobState, Store, LOCAL_USER};

#[derive(Debug, Parser)]
#[command(
    name = "easel",
    version,
    about = "A self-hosted chat assistant that paints."
)]
pub struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the web server (EASEL_ADDR, default 127.0.0.1:3000).
    Serve {
        /// Image jobs this process paints at once; 0 makes a web node that leaves painting to
        /// `easel worker` processes on the same PostgreSQL database (default: 1, or
        /// EASEL_IMAGE_WORKERS / EASEL_IMAGE_CONCURRENCY).
        #[arg(long, value_name = "N")]
        image_workers: Option<usize>,
    },
    /// Paint image jobs from the queue of web nodes sharing a PostgreSQL database
    /// (DATABASE_URL), with the models in EASEL_MODELS_DIR.
    Worker,
    /// Make images from the command line, without the server.
    Generate(Box<GenerateArgs>),
    /// List or download image models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Move an installation between databases.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy every table (users, conversations, images, agents, jobs…) from one database into
    /// a new, empty one, then check both by row counts and content hashes.
    Copy {
        /// The database to copy, e.g. `sqlite://easel.db`.
        #[arg(long)]
        from: String,
        /// The empty target, e.g. `postgres://easel@db.internal/easel`.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Show the models in EASEL_MODELS_DIR and their presets.
    List,
    /// Download an ONNX model (diffusers layout) from the Hugging Face hub (HF_ENDPOINT honoured).
    Pull {
        /// Repository, e.g. `onnxruntime/sd-turbo`.
        repo: String,
        #[arg(long, default_value = "main")]
        revision: String,
        /// Folder name under the models folder (default: the repository's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Optimise a model's graphs for this machine now and save them (EASEL_GRAPH_CACHE), so
    /// the first start that paints with it does not spend the time.
    Optimize {
        /// The model's folder name.
        name: String,
    },
    /// Make an int8 UNet for a model (dynamic quantisation of its MatMul and Conv weights),
    /// offered from then on as the model `<name>-int8`: faster on CPUs, pixels close to fp32's
    /// but not equal. Then paint one picture with each and report step time and PSNR.
    Quantize {
        /// The model's folder name.
        name: String,
        /// Steps of the comparison picture.
        #[arg(long, default_value_t = 4)]
        steps: i64,
        /// Only quantise; skip the comparison.
        #[arg(long)]
        no_compare: bool,
        /// Print one JSON line instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A model id (folder name under EASEL_MODELS_DIR, or `<id>-int8` for its int8 UNet) or a
    /// path to a model folder.
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value = "")]
    pub negative: String,
    #[arg(short = 'n', long = "count", default_value_t = 1)]
    pub n: i64,
    /// WIDTHxHEIGHT (multiples of 8), default: the model's.
    #[arg(long)]
    pub size: Option<String>,
    #[arg(long)]
    pub steps: Option<i64>,
    /// auto, low, medium or high (steps from the model's presets).
    #[arg(long, default_value = "auto")]
    pub quality: String,
    #[arg(long)]
    pub guidance: Option<f32>,
    /// 0–1 (diffusers' guidance_rescale); zero-SNR v-prediction models default to 0.7
    #[arg(long)]
    pub guidance_rescale: Option<f32>,
    /// Prompts over 75 tokens: chunk (75-token chunks, default) or truncate (easel.toml's
    /// images.long_prompts when not given).
    #[arg(long)]
    pub long_prompts: Option<String>,
    /// Read `(word)` and `[word]` literally instead of as A1111 weights.
    #[arg(long)]
    pub no_weighting: bool,
    #[arg(long)]
    pub sampler: Option<String>,
    /// discrete or karras.
    #[arg(long)]
    pub schedule: Option<String>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Unit-variance initial latents [n, 4, h/8, w/8] as float32 .npy.
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// Edit this picture (PNG or JPEG) instead of starting from noise (img2img).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// With --image: the area to repaint (transparent pixels, as OpenAI's API, or white).
    #[arg(long, requires = "image")]
    pub mask: Option<PathBuf>,
    /// With --image: how much may change, above 0 up to 1.
    #[arg(long, default_value_t = 0.6)]
    pub strength: f32,
    /// png or jpg.
    #[arg(long, default_value = "png")]
    pub format: String,
    /// Timed repetitions after one warm-up run (for benchmarks).
    #[arg(long, default_value_t = 0)]
    pub repeat: u32,
    /// Print one JSON line with the files and timings.
    #[arg(long)]
    pub json: bool,
    /// Also write each image's float pixels [3, H, W] in [0, 1] as .npy (for reference checks).
    #[arg(long)]
    pub npy: bool,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info,ort=warn,sqlx=warn",
        1 => "debug,ort=info,sqlx=warn,hyper=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> Result<(), String> {
    let mut config = Config::from_env().map_err(|e| e.to_string())?;
    match cli.command {
        // Both databases are named on the command line; DATABASE_URL is not read.
        Command::Db {
            command: DbCommand::Copy { from, to },
        } => copy_database(&from, &to).await,
        Command::Serve { image_workers } => {
            if let Some(n) = image_workers {
                if n > 64 {
                    return Err(format!(
                        "--image-workers {n}: at most 64 jobs at once; use more `easel worker` processes"
                    ));
                }
                config.images.workers = n.min(1);
                config.images.concurrency = n.max(1);
            }
            crate::serve(config).await.map_err(|e| e.to_string())
        }
        Command::Worker => crate::work(config).await.map_err(|e| e.to_string()),
        Command::Generate(args) => generate(&config, *args).await,
        Command::Models {
            command: ModelsCommand::List,
        } => {
            list_models(&config);
            Ok(())
        }
        Command::Models {
            command: ModelsCommand::Optimize { name },
        } => optimize_model(&config, &name).await,
        Command::Models {
            command:
                ModelsCommand::Quantize {
                    name,
                    steps,
                    no_compare,
                    json,
                },
        } => quantize_model(&config, &name, steps, !no_compare, json).await,
        Command::Models {
            command:
                ModelsCommand::Pull {
                    repo,
                    revision,
                    name,
                },
        } => {
            hub::check_repo_name(&repo).map_err(|e| e.to_string())?;
            let name = name.unwrap_or_else(|| repo.rsplit('/').next().unwrap_or(&repo).to_string());
            let name = hub::safe_folder_name(&name).map_err(|e| e.to_string())?;
            let dest = config.models_dir.join(name);
            let hub = hub::Hub::from_env().map_err(|e| e.to_string())?;
            hub.pull(&repo, &revision, &dest, &hub::print_progress(&repo))
                .await
                .map_err(|e| e.to_string())?;
            let entry = ModelEntry::open(&dest);
            if let Some(p) = entry.problem {
                return Err(format!("downloaded, but the folder is not usable: {p}"));
            }
            // Load it once: whether this machine's ONNX Runtime can run every operator (an fp16
            // export made for CUDA cannot run on the CPU provider) is known now, not at the
            // first picture.
            let engine = ImageEngine::start(&config.models_dir, &config.images, Some(&entry.id));
            let id = entry.id.clone();
            let checked = tokio::task::spawn_blocking(move || engine.check_runs(&id))
                .await
                .map_err(|e| e.to_string())?;
            match checked {
                Ok(()) => {
                    println!(
                        "{} is ready as model `{}` ({}).",
                        repo,
                        entry.id,
                        entry.family.name()
                    );
                    Ok(())
                }
                Err(reason) => Err(format!(
                    "downloaded to {}, but it cannot run here: {reason}",
                    dest.display()
                )),
            }
        }
    }
}

/// Loads a model twice: the first load optimises and saves its graphs (or finds them saved),
/// the second shows what a start costs from then on.
async fn optimize_model(config: &Config, name: &str) -> Result<(), String> {
    let Some(cache) = config.images.graph_cache.clone() else {
        return Err("the graph cache is off (EASEL_GRAPH_CACHE=off): nothing to save".into());
    };
    let name = hub::safe_folder_name(name).map_err(|e| e.to_string())?;
    let dir = config.models_dir.join(name);
    if let Some(problem) = ModelEntry::open(&dir).problem {
        return Err(problem);
    }
    let mut settings = config.images.clone();
    settings.graph_cache_min_bytes = 0;
    let runtime = crate::imaging::runtime::Runtime::load(&settings).map_err(|e| e.to_string())?;
    let (first, second) = tokio::task::spawn_blocking(move || {
        let load = || -> Result<f64, String> {
            let started = Instant::now();
            ModelEntry::open(&dir).load(&runtime)?;
            Ok(started.elapsed().as_secs_f64())
        };
        Ok::<_, String>((load()?, load()?))
    })
    .await
    .map_err(|e| e.to_string())??;
    println!(
        "{name}: optimised graphs in {}; a load took {first:.1} s, from the saved graphs {second:.1} s.",
        cache.display()
    );
    Ok(())
}

/// `easel models quantize`: writes `unet_int8/`, then paints with both UNets.
async fn quantize_model(
    config: &Config,
    name: &str,
    steps: i64,
    compare: bool,
    json: bool,
) -> Result<(), String> {
    let name = hub::safe_folder_name(name).map_err(|e| e.to_string())?;
    let dir = config.models_dir.join(name);
    if let Some(problem) = ModelEntry::open(&dir).problem {
        return Err(problem);
    }
    if !(1..=i64::from(request::MAX_STEPS)).contains(&steps) {
        return Err(format!("--steps must be 1 to {}", request::MAX_STEPS));
    }
    let started = Instant::now();
    let folder = dir.clone();
    let summary = tokio::task::spawn_blocking(move || int8::quantize_model(&folder))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{name}: the UNet could not be quantised: {e}"))?;
    let quantize_ms = ms(started);
    let id = format!("{name}{}", int8::ID_SUFFIX);
    let comparison = if compare {
        let runtime =
            crate::imaging::runtime::Runtime::load(&config.images).map_err(|e| e.to_string())?;
        let folder = dir.clone();
        let result =
            tokio::task::spawn_blocking(move || int8::compare::compare(&folder, &runtime, steps))
                .await
                .map_err(|e| e.to_string())?;
        Some(result.map_err(|e| format!("{id} was written but does not paint: {e}"))?)
    } else {
        None
    };
    if json {
        let line = json!({
            "model": id,
            "matmuls": summary.matmuls,
            "convs": summary.convs,
            "float_bytes": summary.float_bytes,
            "int8_bytes": summary.int8_bytes,
            "quantize_ms": quantize_ms,
            "comparison": comparison,
        });
        println!("{line}");
        return Ok(());
    }
    println!(
        "{name}: {} MatMul and {} Conv weights quantised ({} → {}) in {:.1} s; offered as model `{id}`.",
        summary.matmuls,
        summary.convs,
        size_text(summary.float_bytes),
        size_text(summary.int8_bytes),
        quantize_ms / 1000.0
    );
    if let Some(c) = comparison {
        println!(
            "One {}x{} picture, {} steps, seed 0, each UNet:",
            c.width, c.height, c.steps
        );
        println!("       ms per step   ms in all   vs fp32 (step)");
        println!(
            "fp32   {:>11.0}   {:>9.0}   1.00",
            c.fp32.step_ms, c.fp32.total_ms
        );
        println!(
            "int8   {:>11.0}   {:>9.0}   {:.2}",
            c.int8.step_ms, c.int8.total_ms, c.step_ratio
        );
        match c.psnr_db {
            Some(db) => println!(
                "int8's picture against fp32's: PSNR {db:.1} dB, largest difference {}/255.",
                c.max_diff_255
            ),
            None => println!("int8's picture equals fp32's."),
        }
    }
    Ok(())
}

fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.1} KB", b as f64 / 1e3),
    }
}

async fn copy_database(from: &str, to: &str) -> Result<(), String> {
    let started = Instant::now();
    let checks = crate::store::copy::copy(from, to)
        .await
        .map_err(|e| e.to_string())?;
    println!("{:<16} {:>10}  content hash", "table", "rows");
    for c in &checks {
        println!("{:<16} {:>10}  {}", c.table, c.rows, c.hash);
    }
    println!(
        "Copied {} rows in {} tables in {:.1} s; counts and hashes match on both sides.",
        checks.iter().map(|c| c.rows).sum::<u64>(),
        checks.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn list_models(config: &Config) {
    let registry = crate::imaging::registry::Registry::scan(&config.models_dir);
    if registry.models.is_empty() {
        println!("No models in {}. Download one with `easel models pull TheyCallMeHex/LCM-Dreamshaper-V7-ONNX` (see README).", config.models_dir.display());
        return;
    }
    for m in &registry.models {
        let info = m.info();
        match &info.error {
            Some(e) => println!("{:<24} BROKEN: {e}", info.id),
            None => println!(
                "{:<24} {:<6} {} default {} | sizes {} | steps auto {} low {} medium {} high {} | {} guidance {}",
                info.id,
                info.family,
                info.name,
                info.default_size,
                info.allowed_sizes.join(" "),
                info.steps.auto,
                info.steps.low,
                info.steps.medium,
                info.steps.high,
                info.default_sampler,
                info.default_guidance
            ),
        }
    }
}

/// The folder `--model` names (an id under the models folder or a path), and whether it means
/// the folder's int8 UNet (`<id>-int8` or `<path>-int8`, when no folder has that name).
fn model_folder(config: &Config, model: &str) -> (PathBuf, bool) {
    let folder = |name: &str| {
        if Path::new(name).join("model_index.json").is_file() {
            PathBuf::from(name)
        } else {
            config.models_dir.join(name)
        }
    };
    let dir = folder(model);
    if !dir.is_dir() {
        if let Some(base) = model.strip_suffix(int8::ID_SUFFIX).map(folder) {
            if int8::unet_of(&base).is_some() {
                return (base, true);
            }
        }
    }
    (dir, false)
}

/// `easel generate`: the same image job every other caller submits, on an in-memory database
/// (nothing to keep: the files are the result).
async fn generate(config: &Config, args: GenerateArgs) -> Result<(), String> {
    let (dir, int8) = model_folder(config, &args.model);
    let entry = if int8 {
        ModelEntry::open_int8(&dir).ok_or("the model has no int8 UNet")?
    } else {
        ModelEntry::open(&dir)
    };
    if let Some(problem) = &entry.problem {
        return Err(problem.clone());
    }
    let format = match args.format.as_str() {
        "png" => "png",
        "jpg" | "jpeg" => "jpg",
        other => return Err(format!("--format must be png or jpg, not {other}")),
    };
    let latents = match &args.latents {
        Some(path) => Some(npy::read(path)?.data),
        None => None,
    };
    let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    let engine = ImageEngine::with_registry(
        Registry::of_folders(&parent, std::slice::from_ref(&dir)),
        &config.images,
        Some(&entry.id),
    );
    let model = engine.model(Some(&entry.id)).map_err(|e| e.to_string())?;
    let mut params = ImageParams {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative.clone(),
        n: Some(args.n),
        size: match &args.size {
            Some(s) => SizeChoice::parse(s)
                .ok_or_else(|| format!("--size must be WIDTHxHEIGHT, not {s}"))?,
            None => SizeChoice::Auto,
        },
        quality: Quality::parse(&args.quality).ok_or_else(|| {
            format!(
                "--quality must be auto, low, medium or high, not {}",
                args.quality
            )
        })?,
        steps: args.steps,
        guidance: args.guidance,
        guidance_rescale: args.guidance_rescale,
        long_prompts: Some(match &args.long_prompts {
            Some(text) => LongPrompts::parse(text)
                .ok_or_else(|| format!("--long-prompts must be chunk or truncate, not {text}"))?,
            None => engine.prompt_options().long_prompts,
        }),
        prompt_weighting: Some(!args.no_weighting && engine.prompt_options().weighting),
        sampler: args.sampler.clone(),
        schedule: args.schedule.clone(),
        seed: args.seed,
        latents,
        preview: PreviewRate::None,
        strength: None,
    };
    let mut edit = None;
    if let Some(path) = &args.image {
        let source = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mask = match &args.mask {
            Some(p) => Some(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?),
            None => None,
        };
        let upload = EditUpload {
            source,
            mask,
            size: params.size,
            strength: Some(args.strength),
        };
        let prepared = prepare_edit(upload, &model, SizePolicy::AnyMultipleOf8)
            .await
            .map_err(|e| e.to_string())?;
        params.size = SizeChoice::Exact(prepared.width, prepared.height);
        params.strength = Some(prepared.source.strength);
        edit = Some(prepared.source);
    }
    let request =
        request::resolve(params, &model, SizePolicy::AnyMultipleOf8).map_err(|e| e.to_string())?;

    let store = Store::connect("sqlite::memory:")
        .await
        .map_err(|e| e.to_string())?;
    let jobs = JobService::start(
        store.clone(),
        engine.clone(),
        JobSettings {
            concurrency: 1,
            queue_max_images: request::MAX_IMAGES,
            run_jobs: true,
        },
        None,
        crate::cluster::Cluster::local(store.clone()),
    )
    .await
    .map_err(|e| e.to_string())?;
    let load_started = Instant::now();
    let runtime_model = model.clone();
    let provider = engine.health().execution_provider;
    let runtime = engine.runtime().map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || runtime_model.load(&runtime).map(|_| ()))
        .await
        .map_err(|e| e.to_string())??;
    let load_ms = ms(load_started);
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;

    let mut runs = Vec::new();
    let mut files = Vec::new();
    let total_runs = if args.repeat > 0 { args.repeat + 1 } else { 1 };
    for r in 0..total_runs {
        let started = Instant::now();
        let order = JobOrder {
            owner: LOCAL_USER.into(),
            origin: JobOrigin::Cli,
            request: request.clone(),
            edit: edit.clone(),
            caller: CallerInfo {
                arguments: json!({"prompt": args.prompt}),
                source_image_id: None,
                shown_prompt: args.prompt.clone(),
            },
            keep_pixels: args.npy,
            milestones: Vec::new(),
        };
        let submitted = jobs.submit(order).await.map_err(|e| e.to_string())?;
        let job = jobs
            .job(LOCAL_USER, &submitted.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the job disappeared")?;
        let end = jobs.wait(&job).await;
        if end.state != JobState::Done {
            return Err(end
                .error
                .map(|(_, m)| m)
                .unwrap_or_else(|| "image generation failed".into()));
        }
        let generate_ms = ms(started);
        let timings = end.timings.unwrap_or_default();
        let last = r + 1 == total_runs;
        let encode_started = Instant::now();
        if last {
            for entry in job.log.all() {
                let JobEvent::Image(image) = entry.event else {
                    continue;
                };
                let png = store
                    .image_bytes(LOCAL_USER, &image.id, ImageBlob::Png)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("a finished image is missing")?;
                let bytes = if format == "png" {
                    png
                } else {
                    let meta = store
                        .get_image(LOCAL_USER, &image.id)
                        .await
                        .map_err(|e| e.to_string())?
                        .map(|r| r.metadata)
                        .unwrap_or_default();
                    let rgb = encode::decode(&png).map_err(|e| e.to_string())?;
                    encode::jpeg_with_parameters(
                        &rgb,
                        encode::JPEG_QUALITY,
                        &crate::jobs::spec::parameters_of(&meta),
                    )
                    .map_err(|e| e.to_string())?
                };
                let path = args
                    .out
                    .join(format!("easel-{}-{}.{format}", image.seed, image.index));
                std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                if let Some(pixels) = &image.pixels {
                    let npy_path = path.with_extension("npy");
                    let shape = [3, pixels.height as usize, pixels.width as usize];
                    npy::write(&npy_path, &shape, &pixels.data).map_err(|e| e.to_string())?;
                }
                files.push(path.display().to_string());
            }
        }
        let encode_ms = ms(encode_started);
        // The first of several runs warms caches and allocators; it is not timed.
        if args.repeat == 0 || r > 0 {
            runs.push(json!({
                "total_ms": generate_ms,
                "text_encoder_ms": timings.text_encoder_ms,
                "denoise_ms": timings.denoise_ms,
                "vae_ms": timings.vae_ms,
                "encode_ms": encode_ms,
                "onnx_ms": timings.onnx_ms,
                "outside_engine_ms": (generate_ms - timings.text_encoder_ms - timings.denoise_ms - timings.vae_ms).max(0.0),
            }));
        }
    }
    let mean = |key: &str| {
        runs.iter().filter_map(|r| r[key].as_f64()).sum::<f64>() / runs.len().max(1) as f64
    };
    if args.json {
        let summary = json!({
            "model": entry.id,
            "provider": provider,
            "files": files,
            "n": request.n,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "sampler": request.sampler.name(),
            "schedule": request.schedule.name(),
            "guidance": request.guidance,
            "seed": request.seed,
            "load_ms": load_ms,
            "runs": runs,
            "mean": {
                "total_ms": mean("total_ms"),
                "text_encoder_ms": mean("text_encoder_ms"),
                "denoise_ms": mean("denoise_ms"),
                "vae_ms": mean("vae_ms"),
                "encode_ms": mean("encode_ms"),
                "onnx_ms": mean("onnx_ms"),
                "outside_engine_ms": mean("outside_engine_ms"),
            }
        });
        println!("{summary}");
    } else {
        for f in &files {
            println!("{f}");
        }
        eprintln!(
            "{} image(s) {}x{}, {} steps of {} ({}), seed {}: {:.0} ms (ONNX Runtime {:.0} ms)",
            request.n,
            request.width,
            request.height,
            request.steps,
            request.sampler.name(),
            request.schedule.name(),
            request.seed,
            mean("total_ms"),
            mean("onnx_ms")
        );
    }
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
