//! A release's long description as HTML that is safe to put in a page, whoever wrote it: raw HTML
//! in Markdown is shown as text, links and images keep only schemes that cannot run script, and
//! reStructuredText and plain text are shown as they are, preformatted (rendering them would need
//! docutils, and docutils' HTML is not safe on its own either).

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

/// The most of a description rendered; the rest is cut, with a note. Metadata is bounded by the
/// upload limit already; this keeps one huge description from making its page slow to build.
pub const MAX_DESCRIPTION_BYTES: usize = 256 * 1024;

/// How a description is written, from its `Description-Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Markup {
    Markdown,
    /// reStructuredText: PyPI's default when no content type is given.
    Rst,
    Plain,
}

impl Markup {
    /// The markup a `Description-Content-Type` value names (parameters such as `charset` or
    /// `variant` are ignored); reStructuredText when there is none, as PyPI assumes.
    pub fn of_content_type(content_type: Option<&str>) -> Markup {
        let Some(content_type) = content_type else {
            return Markup::Rst;
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/markdown" => Markup::Markdown,
            "text/plain" => Markup::Plain,
            _ => Markup::Rst,
        }
    }
}

/// `text` written in `markup`, as HTML safe to embed.
pub fn description_html(text: &str, markup: Markup) -> String {
    let cut = text.len() > MAX_DESCRIPTION_BYTES;
    let text = truncate(text, MAX_DESCRIPTION_BYTES);
    let mut html = match markup {
        Markup::Markdown => markdown(text),
        Markup::Rst | Markup::Plain => {
            let mut out = String::from("<pre class=\"description-text\">");
            escape_into(text, &mut out);
            out.push_str("</pre>\n");
            out
        }
    };
    if cut {
        html.push_str("<p class=\"note\">The description is longer than this page shows.</p>\n");
    }
    html
}

/// `text` cut to at most `bytes`, at a character boundary.
fn truncate(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn markdown(text: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_GFM;
    let events = Parser::new_ext(text, options).map(|event| match event {
        // Raw HTML is shown as the text it is, never interpreted.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_or_inert(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_or_inert(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

/// `url` when [`is_safe_url`] allows it, otherwise a link to nowhere.
fn safe_or_inert(url: CowStr<'_>) -> CowStr<'_> {
    if is_safe_url(&url) {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

/// Whether a URL from package metadata may be a link or image source: `http`, `https` and
/// `mailto`, or a relative reference. Anything with another scheme (`javascript:`, `data:`,
/// `vbscript:`) is refused, and so is anything with whitespace or control characters, which
/// browsers strip from a scheme (`java\tscript:` runs).
pub fn is_safe_url(url: &str) -> bool {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let scheme_end = url.find([':', '/', '?', '#']);
    match scheme_end {
        Some(at) if url[at..].starts_with(':') => {
            let scheme = url[..at].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// Whether `url` is an absolute `http` or `https` URL: what a metadata URL must be to be shown as
/// a link (a relative one would point into this index).
pub fn is_web_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")) && is_safe_url(url)
}

/// `text` with the characters that mean something in HTML escaped, appended to `out`.
pub fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_in_markdown_is_text() {
        let html = description_html(
            "Hi <script>document.title='pwned'</script>\n\n<img src=x onerror=alert(1)>\n",
            Markup::Markdown,
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn script_links_are_inert() {
        for url in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox",
        ] {
            let html = description_html(&format!("[x]({url}) ![y]({url})"), Markup::Markdown);
            assert!(!html.to_ascii_lowercase().contains("script:"), "{html}");
            assert!(!html.contains("data:"), "{html}");
        }
        let html = description_html("[x](<java\tscript:alert(1)>)", Markup::Markdown);
        assert!(html.contains("href=\"#\""), "{html}");
    }

    #[test]
    fn safe_links_survive() {
        let html = description_html(
            "[a](https://example.org/a?b=1&c=2) [b](#usage) [c](docs/x.md) [d](mailto:a@b.c)",
            Markup::Markdown,
        );
        assert!(
            html.contains("href=\"https://example.org/a?b=1&amp;c=2\""),
            "{html}"
        );
        assert!(html.contains("href=\"#usage\""), "{html}");
        assert!(html.contains("href=\"docs/x.md\""), "{html}");
        assert!(html.contains("href=\"mailto:a@b.c\""), "{html}");
    }

    #[test]
    fn markdown_is_rendered() {
        let html = description_html(
            "# Title\n\n*em* `code`\n\n| a |\n|---|\n| 1 |\n",
            Markup::Markdown,
        );
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<em>em</em>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
    }

    #[test]
    fn rst_and_text_are_preformatted_and_escaped() {
        for markup in [Markup::Rst, Markup::Plain] {
            let html = description_html(
                "Title\n=====\n\n.. raw:: html\n\n   <b onmouseover=x>",
                markup,
            );
            assert!(html.starts_with("<pre"), "{html}");
            assert!(html.contains("&lt;b onmouseover=x&gt;"), "{html}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Markup::of_content_type(Some("text/markdown; charset=UTF-8; variant=GFM")),
            Markup::Markdown
        );
        assert_eq!(Markup::of_content_type(Some("text/plain")), Markup::Plain);
        assert_eq!(Markup::of_content_type(Some("text/x-rst")), Markup::Rst);
        assert_eq!(Markup::of_content_type(None), Markup::Rst);
    }

    #[test]
    fn long_descriptions_are_cut_at_a_character() {
        let text = "é".repeat(MAX_DESCRIPTION_BYTES);
        let html = description_html(&text, Markup::Plain);
        assert!(html.contains("longer than this page shows"));
    }

    #[test]
    fn web_urls() {
        assert!(is_web_url("https://example.org/"));
        assert!(is_web_url("HTTP://example.org/"));
        assert!(!is_web_url("javascript:alert(1)"));
        assert!(!is_web_url("/relative"));
        assert!(!is_web_url("https://exa mple.org/"));
    }
}
