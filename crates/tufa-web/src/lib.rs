//! The index's pages for people: home and search, project pages, and the trust page, rendered
//! on the server from what the index read (see [`view`]). Pure: no database, no I/O. Templates
//! escape everything by default; the only HTML that goes in unescaped is built here, from
//! Markdown with raw HTML and script URLs taken out ([`markup`]) and the latency chart
//! ([`chart`]), which holds numbers only. Pages need no script, and the headers forbid any.

pub mod chart;
pub mod format;
pub mod markup;
pub mod view;

use minijinja::value::Serde;
use minijinja::{Environment, Value, context};

/// Headers every page carries: no script at all, styles from this index only, images also from
/// the web (a README's badges), no framing, no guessing of content types.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; \
         base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// The stylesheet every page links to, served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = include_str!("../static/tufa.css");
pub const STYLESHEET_PATH: &str = "/static/tufa.css";

/// Results on one page of search.
pub const RESULTS_PER_PAGE: i64 = 50;
/// Uploads the home page lists.
pub const RECENT_UPLOADS: i64 = 20;

/// A template that failed to render: a bug in this crate, never caused by the data alone.
#[derive(Debug)]
pub struct RenderError(String);

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rendering the page failed: {}", self.0)
    }
}

impl std::error::Error for RenderError {}

impl From<minijinja::Error> for RenderError {
    fn from(error: minijinja::Error) -> Self {
        RenderError(format!("{error:#}"))
    }
}

/// The templates, parsed once.
pub struct Pages {
    env: Environment<'static>,
}

impl Default for Pages {
    fn default() -> Self {
        Self::new()
    }
}

impl Pages {
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../templates/base.html")),
            ("home.html", include_str!("../templates/home.html")),
            ("search.html", include_str!("../templates/search.html")),
            ("project.html", include_str!("../templates/project.html")),
            ("trust.html", include_str!("../templates/trust.html")),
        ] {
            // The templates are part of this crate: a syntax error fails every page test.
            if let Err(error) = env.add_template(name, source) {
                panic!("template {name} does not parse: {error:#}");
            }
        }
        env.add_filter("size", format::size);
        env.add_filter("utc", format::utc);
        env.add_filter("ago", format::ago);
        env.add_filter("left", format::left);
        env.add_filter("duration", format::duration_micros);
        env.add_function("expiry_class", expiry_class);
        Pages { env }
    }

    fn render(&self, name: &str, context: Value) -> Result<String, RenderError> {
        Ok(self.env.get_template(name)?.render(context)?)
    }

    pub fn home(&self, home: &view::Home, now: i64) -> Result<String, RenderError> {
        self.render(
            "home.html",
            context! { home => Value::from(Serde(home)), now, query => "" },
        )
    }

    pub fn search(&self, search: &view::Search) -> Result<String, RenderError> {
        let pages = (search.total + search.per_page - 1) / search.per_page.max(1);
        let link = |page: i64| format!("/search/?q={}&page={page}", query_component(&search.query));
        let previous = (search.page > 1).then(|| link(search.page - 1));
        let next = (search.page < pages).then(|| link(search.page + 1));
        self.render(
            "search.html",
            context! {
                search => Value::from(Serde(search)),
                pages,
                previous,
                next,
                query => &search.query
            },
        )
    }

    pub fn project(&self, project: &view::Project, now: i64) -> Result<String, RenderError> {
        let description = project
            .description
            .as_ref()
            .map(|(text, content_type)| {
                markup::description_html(
                    text,
                    markup::Markup::of_content_type(content_type.as_deref()),
                )
            })
            .map(Value::from_safe_string);
        self.render(
            "project.html",
            context! {
                project => Value::from(Serde(project)),
                description,
                now,
                query => ""
            },
        )
    }

    pub fn trust(&self, trust: &view::Trust, now: i64) -> Result<String, RenderError> {
        let chart = chart::latency_chart(&trust.signings, now);
        self.render(
            "trust.html",
            context! {
                trust => Value::from(Serde(trust)),
                chart => Value::from(Serde(&chart)),
                now,
                query => ""
            },
        )
    }
}

/// The class a role's expiry is shown in: `expired`, `soon` (an offline role within 30 days,
/// when people must sign it again; an online role within 2 hours, though the index re-signs it
/// well before), or `ok`.
fn expiry_class(expires: i64, now: i64, online: bool) -> &'static str {
    let warn_micros: i64 = if online {
        2 * 3_600_000_000
    } else {
        30 * 86_400_000_000
    };
    if expires <= now {
        "expired"
    } else if expires - now < warn_micros {
        "soon"
    } else {
        "ok"
    }
}

/// `text` percent-encoded for a query string.
fn query_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script>\"'><img src=x onerror=alert(1)>";
    const NOW: i64 = 1_800_000_000_000_000;

    fn project() -> view::Project {
        view::Project {
            name: "sample".into(),
            display_name: HOSTILE.into(),
            version: "1.0".into(),
            latest: true,
            summary: Some(HOSTILE.into()),
            description: Some((format!("# Hi\n\n{HOSTILE}"), Some("text/markdown".into()))),
            requires_python: Some(HOSTILE.into()),
            license: Some(HOSTILE.into()),
            author: None,
            urls: vec![
                view::Link {
                    label: HOSTILE.into(),
                    url: "https://example.org/\"onmouseover=\"alert(1)".into(),
                    web: true,
                },
                view::Link {
                    label: "Docs".into(),
                    url: "javascript:alert(1)".into(),
                    web: false,
                },
            ],
            releases: vec![view::ReleaseRow {
                version: "1.0".into(),
                uploaded: NOW,
                yanked: Some(HOSTILE.into()),
                files: 1,
            }],
            files: vec![view::FileRow {
                filename: "sample-1.0-py3-none-any.whl".into(),
                url: "/files/ab/sample-1.0-py3-none-any.whl".into(),
                packagetype: "bdist_wheel".into(),
                size: 1234,
                sha256: "ab".repeat(32),
                uploaded: NOW,
                requires_python: None,
                yanked: None,
                publisher: Some(HOSTILE.into()),
                cooldown: Some(view::Cooldown::Denied {
                    reason: HOSTILE.into(),
                }),
            }],
            origin: view::Origin::Mirrored {
                upstream: HOSTILE.into(),
                status: Some(HOSTILE.into()),
                reason: None,
            },
            cooldown: Some("7d".into()),
            base_url: "http://index.example".into(),
        }
    }

    /// Whether `html` holds markup from [`HOSTILE`] rather than its text.
    fn injected(html: &str) -> bool {
        html.contains("<script") || html.contains("<img src=x") || html.contains("\"onmouseover")
    }

    #[test]
    fn every_page_renders_hostile_text_as_text() {
        let pages = Pages::new();
        let project = pages.project(&project(), NOW).unwrap();
        assert!(!injected(&project), "{project}");
        assert!(
            project.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{project}"
        );
        assert!(
            project.contains("<h1>Hi</h1>"),
            "Markdown rendered: {project}"
        );
        assert!(!project.contains("href=\"javascript"), "{project}");
        let search = pages
            .search(&view::Search {
                query: HOSTILE.into(),
                hits: vec![view::Hit {
                    name: "sample".into(),
                    display_name: HOSTILE.into(),
                    summary: Some(HOSTILE.into()),
                }],
                total: 120,
                page: 2,
                per_page: RESULTS_PER_PAGE,
            })
            .unwrap();
        assert!(!injected(&search), "{search}");
        assert!(search.contains("page 2 of 3"), "{search}");
        assert!(
            search.contains("?q=%3Cscript%3E"),
            "the query is encoded: {search}"
        );
        let home = pages
            .home(
                &view::Home {
                    projects: 1,
                    files: 1,
                    recent: vec![view::Recent {
                        name: "sample".into(),
                        display_name: HOSTILE.into(),
                        version: "1.0".into(),
                        filename: "sample-1.0-py3-none-any.whl".into(),
                        uploaded: NOW - 60_000_000,
                    }],
                    trust: None,
                    base_url: "http://index.example".into(),
                },
                NOW,
            )
            .unwrap();
        assert!(!injected(&home), "{home}");
        assert!(home.contains("1 min ago"), "{home}");
    }

    #[test]
    fn the_trust_page_colours_expiry() {
        let role = |name: &str, expires: i64, online: bool| view::Role {
            name: name.into(),
            version: 3,
            expires: Some(expires),
            threshold: 1,
            keys: vec![view::KeyInfo {
                id: "0123456789abcdef0123".into(),
                keytype: "ed25519".into(),
                scheme: "ed25519".into(),
            }],
            online,
        };
        let trust = view::Trust {
            roles: vec![
                role("root", NOW + 400 * 86_400_000_000, false),
                role("targets", NOW + 86_400_000_000, false),
                role("timestamp", NOW - 1, true),
            ],
            bins: None,
            last_serial: 10,
            signed_serial: 8,
            oldest_unsigned: Some(NOW - 5_000_000),
            timestamp: None,
            root: None,
            log: Some(view::LogState {
                origin: "index.example/log".into(),
                size: 5,
                root_hash: "abc=".into(),
                signers: vec!["index.example/log".into(), "witness.example".into()],
            }),
            failure: Some(HOSTILE.into()),
            signings: vec![view::Signing {
                signed: NOW - 1_000_000,
                oldest_change: NOW - 3_000_000,
                changes: 2,
            }],
        };
        let html = Pages::new().trust(&trust, NOW).unwrap();
        assert!(!injected(&html), "{html}");
        assert!(html.contains("2 changes waiting"), "{html}");
        assert!(html.contains("class=\"expiry ok\""), "{html}");
        assert!(html.contains("class=\"expiry soon\""), "{html}");
        assert!(html.contains("class=\"expiry expired\""), "{html}");
        assert!(html.contains("witness.example (witness)"), "{html}");
        assert!(html.contains("class=\"bar\""), "{html}");
    }
}
