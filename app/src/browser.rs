//! Browser-only helpers (files, clipboard, downloads, the mask canvas). On the server they are
//! inert: they only run from event handlers, after hydration.

#[cfg(feature = "hydrate")]
mod imp {
    use base64::Engine as _;
    use wasm_bindgen::{Clamped, JsCast};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{
        CanvasRenderingContext2d, HtmlAnchorElement, HtmlCanvasElement, HtmlInputElement,
    };

    fn document() -> Option<web_sys::Document> {
        web_sys::window()?.document()
    }

    fn canvas(id: &str) -> Option<(HtmlCanvasElement, CanvasRenderingContext2d)> {
        let canvas: HtmlCanvasElement = document()?.get_element_by_id(id)?.dyn_into().ok()?;
        let ctx: CanvasRenderingContext2d = canvas.get_context("2d").ok()??.dyn_into().ok()?;
        Some((canvas, ctx))
    }

    /// The file chosen in `<input type=file id=…>`: (data URL for display, base64, name).
    pub async fn read_file(input_id: &str) -> Option<(String, String, String)> {
        let input: HtmlInputElement = document()?.get_element_by_id(input_id)?.dyn_into().ok()?;
        let file = input.files()?.get(0)?;
        let buffer = JsFuture::from(file.array_buffer()).await.ok()?;
        let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let mime = if file.type_().is_empty() {
            "image/png".to_string()
        } else {
            file.type_()
        };
        Some((format!("data:{mime};base64,{b64}"), b64, file.name()))
    }

    pub fn copy_text(text: &str) {
        if let Some(window) = web_sys::window() {
            let _ = window.navigator().clipboard().write_text(text);
        }
    }

    pub fn download(url: &str, name: &str) {
        let Some(doc) = document() else { return };
        let Ok(a) = doc.create_element("a") else {
            return;
        };
        let Ok(a) = a.dyn_into::<HtmlAnchorElement>() else {
            return;
        };
        a.set_href(url);
        a.set_download(name);
        a.click();
    }

    /// Canvas pixel coordinates of a pointer position.
    pub fn canvas_point(id: &str, client_x: f64, client_y: f64) -> Option<(f64, f64)> {
        let (canvas, _) = canvas(id)?;
        let rect = canvas.get_bounding_client_rect();
        if rect.width() <= 0.0 || rect.height() <= 0.0 {
            return None;
        }
        let x = (client_x - rect.left()) / rect.width() * f64::from(canvas.width());
        let y = (client_y - rect.top()) / rect.height() * f64::from(canvas.height());
        Some((x, y))
    }

    /// Paints (or erases) a round stroke from `from` to `to`; `size` is in canvas pixels.
    pub fn stroke(id: &str, from: Option<(f64, f64)>, to: (f64, f64), size: f64, erase: bool) {
        let Some((_, ctx)) = canvas(id) else { return };
        let _ = ctx.set_global_composite_operation(if erase {
            "destination-out"
        } else {
            "source-over"
        });
        ctx.set_stroke_style_str("rgba(255, 70, 90, 0.55)");
        ctx.set_fill_style_str("rgba(255, 70, 90, 0.55)");
        ctx.set_line_width(size);
        ctx.set_line_cap("round");
        ctx.set_line_join("round");
        let (fx, fy) = from.unwrap_or(to);
        ctx.begin_path();
        ctx.move_to(fx, fy);
        ctx.line_to(to.0, to.1);
        ctx.stroke();
    }

    pub fn clear(id: &str) {
        if let Some((canvas, ctx)) = canvas(id) {
            ctx.clear_rect(
                0.0,
                0.0,
                f64::from(canvas.width()),
                f64::from(canvas.height()),
            );
        }
    }

    /// The painted area as an OpenAI-style mask PNG (transparent = edit, opaque black = keep),
    /// or `None` when nothing is painted. Usable with `/v1/images/edits` as it is.
    pub fn mask_png(id: &str) -> Option<String> {
        let (canvas, ctx) = canvas(id)?;
        let (w, h) = (canvas.width(), canvas.height());
        let painted = ctx
            .get_image_data(0.0, 0.0, f64::from(w), f64::from(h))
            .ok()?
            .data()
            .0;
        if !painted.chunks_exact(4).any(|p| p[3] > 0) {
            return None;
        }
        let mut mask = vec![0u8; painted.len()];
        for (out, p) in mask.chunks_exact_mut(4).zip(painted.chunks_exact(4)) {
            out[3] = if p[3] > 0 { 0 } else { 255 };
        }
        let doc = document()?;
        let out: HtmlCanvasElement = doc.create_element("canvas").ok()?.dyn_into().ok()?;
        out.set_width(w);
        out.set_height(h);
        let out_ctx: CanvasRenderingContext2d = out.get_context("2d").ok()??.dyn_into().ok()?;
        let data =
            web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&mask), w, h).ok()?;
        out_ctx.put_image_data(&data, 0.0, 0.0).ok()?;
        out.to_data_url_with_type("image/png").ok()
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    pub async fn read_file(_input_id: &str) -> Option<(String, String, String)> {
        None
    }
    pub fn copy_text(_text: &str) {}
    pub fn download(_url: &str, _name: &str) {}
    pub fn canvas_point(_id: &str, _x: f64, _y: f64) -> Option<(f64, f64)> {
        None
    }
    pub fn stroke(_id: &str, _from: Option<(f64, f64)>, _to: (f64, f64), _size: f64, _erase: bool) {
    }
    pub fn clear(_id: &str) {}
    pub fn mask_png(_id: &str) -> Option<String> {
        None
    }
}

pub use imp::*;
