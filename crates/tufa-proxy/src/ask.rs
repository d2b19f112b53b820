//! Asking the index to mirror a project the signed metadata does not list yet.
//!
//! An index with an upstream mirrors a project when its simple page is first requested, and
//! answers once the page is signed (see `tufa_index::mirror`). The proxy reads only signed
//! targets, so for a project it finds no target for, it requests that page from the index once,
//! then refreshes its TUF metadata and looks again. Concurrent lookups of one name share one
//! request, and a name is asked about at most once per [`ASK_INTERVAL`], so a client asking for
//! names that exist nowhere cannot make the proxy hammer the index (or the index its upstream).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tufa_index::name::ProjectName;

/// How long one request to the index may take: the index waits up to 12 s for upstream and the
/// publisher (`tufa_index::mirror::FIRST_REQUEST_WAIT`).
pub const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// A name is asked about at most once per this interval.
pub const ASK_INTERVAL: Duration = Duration::from_secs(60);
/// Names remembered at most; older entries are dropped past it.
const MAX_REMEMBERED: usize = 10_000;

/// When the index answered that it has the page (`Some`), or that it has none (`None`).
type Answer = Option<Instant>;

struct Asked {
    at: Instant,
    answer: watch::Receiver<Option<Answer>>,
}

pub struct Asker {
    index_url: String,
    agent: ureq::Agent,
    asked: Mutex<HashMap<ProjectName, Asked>>,
}

impl std::fmt::Debug for Asker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asker")
            .field("index_url", &self.index_url)
            .finish_non_exhaustive()
    }
}

impl Asker {
    pub fn new(index_url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(ASK_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("tufa-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Asker {
            index_url: index_url.trim_end_matches('/').to_string(),
            agent,
            asked: Mutex::default(),
        }
    }

    /// Asks the index for `name`'s page (once per [`ASK_INTERVAL`]); when it has one, the
    /// instant it answered, after which a refresh finds the signed target.
    pub async fn ask(&self, name: &ProjectName) -> Answer {
        let mut answer = {
            let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
            match asked.get(name) {
                Some(earlier) if earlier.at.elapsed() < ASK_INTERVAL => earlier.answer.clone(),
                _ => {
                    if asked.len() >= MAX_REMEMBERED {
                        asked.retain(|_, earlier| earlier.at.elapsed() < ASK_INTERVAL);
                    }
                    let (sender, answer) = watch::channel(None);
                    asked.insert(
                        name.clone(),
                        Asked {
                            at: Instant::now(),
                            answer: answer.clone(),
                        },
                    );
                    let agent = self.agent.clone();
                    let url = format!("{}/simple/{name}/", self.index_url);
                    tokio::task::spawn_blocking(move || {
                        let _ = sender.send(Some(request(&agent, &url)));
                    });
                    answer
                }
            }
        };
        match answer.wait_for(Option::is_some).await {
            Ok(answer) => answer.flatten(),
            Err(_) => None,
        }
    }
}

fn request(agent: &ureq::Agent, url: &str) -> Answer {
    match agent
        .get(url)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
    {
        Ok(response) if response.status() == 200 => {
            tracing::info!("the index mirrored {url}");
            Some(Instant::now())
        }
        Ok(response) => {
            tracing::info!(
                "asked the index for {url}: HTTP {} {}",
                response.status().as_u16(),
                response.status().canonical_reason().unwrap_or_default()
            );
            None
        }
        Err(error) => {
            tracing::warn!("asking the index for {url} failed: {error}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// A loopback index answering every request with `status` after `delay`; the paths asked.
    fn index(status: &'static str, delay: Duration) -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sender, paths) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let _ = sender.send(line.split(' ').nth(1).unwrap_or_default().to_string());
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                        break;
                    }
                }
                std::thread::sleep(delay);
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        (url, paths)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_name_is_asked_once_however_often_and_concurrently_it_is_looked_up() {
        let (url, paths) = index("200 OK", Duration::from_millis(200));
        let asker = std::sync::Arc::new(Asker::new(&url));
        let name = ProjectName::new("Flask").unwrap();
        let mut lookups = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (asker, name) = (std::sync::Arc::clone(&asker), name.clone());
            lookups.spawn(async move { asker.ask(&name).await });
        }
        while let Some(answer) = lookups.join_next().await {
            assert!(answer.unwrap().is_some(), "the index has the page");
        }
        // Asked again within the interval: the earlier answer stands, the index is not asked.
        assert!(asker.ask(&name).await.is_some());
        assert_eq!(paths.recv().unwrap(), "/simple/flask/");
        assert!(paths.try_recv().is_err(), "one request for one name");

        let (url, paths) = index("404 Not Found", Duration::ZERO);
        let asker = Asker::new(&url);
        for _ in 0..5 {
            assert_eq!(asker.ask(&name).await, None, "no such project anywhere");
        }
        assert_eq!(paths.recv().unwrap(), "/simple/flask/");
        assert!(
            paths.try_recv().is_err(),
            "a missing name is not asked again at once"
        );
    }
}
