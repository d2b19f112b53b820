//! Content negotiation for the simple API (PEP 691): the `Accept` header with q-values, or a
//! `?format=` query parameter that overrides it.

/// The three representations of a simple API page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
    LegacyHtml,
}

pub const JSON: &str = "application/vnd.pypi.simple.v1+json";
pub const HTML: &str = "application/vnd.pypi.simple.v1+html";
const LATEST_JSON: &str = "application/vnd.pypi.simple.latest+json";
const LATEST_HTML: &str = "application/vnd.pypi.simple.latest+html";
const LEGACY_HTML: &str = "text/html";

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON,
            Format::Html => HTML,
            Format::LegacyHtml => "text/html; charset=utf-8",
        }
    }

    fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            JSON | LATEST_JSON => Some(Format::Json),
            HTML | LATEST_HTML => Some(Format::Html),
            LEGACY_HTML => Some(Format::LegacyHtml),
            _ => None,
        }
    }
}

/// Picks the representation for a request: `format` (the query parameter) if given, else the best
/// `Accept` entry by q-value (the earlier entry on a tie), else the legacy HTML every client reads.
/// `None` means nothing the client accepts is served: 406.
pub fn negotiate(accept: Option<&str>, format: Option<&str>) -> Option<Format> {
    if let Some(format) = format {
        // An unencoded `+` in a query string arrives as a space; media types hold no spaces.
        return Format::from_media_type(format.trim().replace(' ', "+").as_str());
    }
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Format::LegacyHtml);
    };
    let mut best: Option<(f32, Format)> = None;
    for entry in accept.split(',') {
        let mut parts = entry.split(';');
        let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut quality = 1.0f32;
        for parameter in parts {
            if let Some((key, value)) = parameter.split_once('=')
                && key.trim().eq_ignore_ascii_case("q")
            {
                quality = value.trim().parse().unwrap_or(0.0);
            }
        }
        let format = match media_type.as_str() {
            "*/*" | "text/*" => Some(Format::LegacyHtml),
            "application/*" => Some(Format::Json),
            other => Format::from_media_type(other),
        };
        if let Some(format) = format
            && quality > 0.0
            && best.is_none_or(|(q, _)| quality > q)
        {
            best = Some((quality, format));
        }
    }
    best.map(|(_, format)| format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_and_uv_get_json() {
        let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
        let uv = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
        assert_eq!(negotiate(Some(pip), None), Some(Format::Json));
        assert_eq!(negotiate(Some(uv), None), Some(Format::Json));
    }

    #[test]
    fn q_values_order_and_format_overrides() {
        assert_eq!(
            negotiate(
                Some(
                    "application/vnd.pypi.simple.v1+json;q=0.5, application/vnd.pypi.simple.v1+html"
                ),
                None
            ),
            Some(Format::Html)
        );
        assert_eq!(negotiate(None, None), Some(Format::LegacyHtml));
        assert_eq!(negotiate(Some("*/*"), None), Some(Format::LegacyHtml));
        assert_eq!(negotiate(Some("text/html"), Some(JSON)), Some(Format::Json));
        assert_eq!(negotiate(Some("image/png"), None), None);
        assert_eq!(negotiate(Some("text/html;q=0"), None), None);
        assert_eq!(negotiate(None, Some("application/xml")), None);
        assert_eq!(
            negotiate(None, Some("application/vnd.pypi.simple.v1 json")),
            Some(Format::Json)
        );
        assert_eq!(
            negotiate(Some("application/vnd.pypi.simple.latest+json"), None),
            Some(Format::Json)
        );
    }
}
