//! The log's side of C2SP tlog-witness: every new checkpoint goes to each configured witness as
//! an `add-checkpoint` request (old size, consistency proof, checkpoint), from a thread per
//! witness, so that witnesses answer concurrently and none can hold back publishing.
//!
//! An append waits for cosignatures at most [`WitnessSettings::wait`]; what arrives later is
//! added to `log/checkpoint` and `log/proof/<V>` by [`crate::Repository::gather_cosignatures`]
//! (the index calls it on every round, and a late answer wakes it). A witness that answers 409
//! with the size it knows gets the checkpoint again with a proof from that size; a witness that
//! fails is tried again with back-off, and its failure is reported (log, `/status`, `/metrics`).
//! At most one request per witness is in flight: a slow witness gets the newest checkpoint when
//! it is done with the last one, never a queue of them.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tufa_tlog::{AddCheckpoint, Hash, Note, NoteSignature, VerifierKey};

/// The longest witness answer read: cosignature lines are about 150 bytes each.
const MAX_ANSWER_BYTES: u64 = 16 * 1024;
/// The most cosignature lines kept from one witness's answer.
const MAX_COSIGNATURES_PER_WITNESS: usize = 4;
/// How long one request to a witness may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause before a failing witness is asked again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The witnesses a log asks for cosignatures.
#[derive(Clone, Default)]
pub struct WitnessSettings {
    /// Each witness's base URL (`add-checkpoint` is appended).
    pub urls: Vec<String>,
    /// The witnesses' cosigning keys (type 0x04). When any are given, a cosignature is kept
    /// only if it verifies under one of them, so a witness cannot put a bad signature under
    /// another's name into the checkpoint (clients refuse a note with one).
    pub keys: Vec<VerifierKey>,
    /// How long an append waits for cosignatures before it writes the checkpoint without them.
    pub wait: Duration,
    /// Called from a witness's thread when its answer arrives after the append stopped
    /// waiting: the index wakes its publisher, which adds the cosignature.
    pub on_late_answer: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for WitnessSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessSettings")
            .field("urls", &self.urls)
            .field("keys", &self.keys)
            .field("wait", &self.wait)
            .finish()
    }
}

/// One witness as the publisher sees it, for `/status` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessStatus {
    pub url: String,
    /// The size of the latest checkpoint it cosigned.
    pub cosigned_size: Option<u64>,
    /// Requests that failed since the start.
    pub failures: u64,
    /// Why the last request failed, until one succeeds.
    pub last_error: Option<String>,
}

/// What a witness answered to the checkpoint of `size`.
#[derive(Debug)]
pub(crate) enum Answer {
    Cosigned(Vec<NoteSignature>),
    /// 409 with the size the witness last cosigned.
    Conflict(u64),
    Failed(String),
}

pub(crate) struct Reply {
    pub witness: usize,
    pub size: u64,
    pub answer: Answer,
}

struct Endpoint {
    url: String,
    /// The size the witness last cosigned, as far as this log knows.
    known_size: Option<u64>,
    in_flight: bool,
    retry_at: Option<Instant>,
    consecutive_failures: u32,
    status: WitnessStatus,
}

pub(crate) struct Witnesses {
    settings: WitnessSettings,
    agent: ureq::Agent,
    endpoints: Mutex<Vec<Endpoint>>,
    sender: Sender<Reply>,
    replies: Mutex<Receiver<Reply>>,
}

/// A checkpoint to submit: its size, its note (signed by the log), and the consistency proof
/// from any older size.
pub(crate) struct Submission<'a> {
    pub size: u64,
    pub note: &'a Note,
    /// The size of the checkpoint published before, which a witness that answered before has
    /// most likely cosigned.
    pub previous_size: u64,
    pub proof: &'a dyn Fn(u64) -> Result<Vec<Hash>, String>,
}

impl Witnesses {
    pub fn new(settings: &WitnessSettings) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        let (sender, receiver) = channel();
        Witnesses {
            settings: settings.clone(),
            agent,
            endpoints: Mutex::new(
                settings
                    .urls
                    .iter()
                    .map(|url| Endpoint {
                        url: url.trim_end_matches('/').to_string(),
                        known_size: None,
                        in_flight: false,
                        retry_at: None,
                        consecutive_failures: 0,
                        status: WitnessStatus {
                            url: url.clone(),
                            cosigned_size: None,
                            failures: 0,
                            last_error: None,
                        },
                    })
                    .collect(),
            ),
            sender,
            replies: Mutex::new(receiver),
        }
    }

    fn endpoints(&self) -> std::sync::MutexGuard<'_, Vec<Endpoint>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.settings.urls.is_empty()
    }

    pub fn status(&self) -> Vec<WitnessStatus> {
        self.endpoints().iter().map(|e| e.status.clone()).collect()
    }

    /// Sends `submission` to every witness that has not cosigned it, is not busy and is not
    /// backing off; returns how many requests went out.
    pub fn submit(&self, submission: &Submission<'_>, now: Instant) -> usize {
        let mut endpoints = self.endpoints();
        let mut sent = 0;
        for (witness, endpoint) in endpoints.iter_mut().enumerate() {
            if endpoint.in_flight
                || endpoint.retry_at.is_some_and(|at| at > now)
                || endpoint.status.cosigned_size == Some(submission.size)
            {
                continue;
            }
            let old = endpoint.known_size.unwrap_or(submission.previous_size);
            let body = if old > submission.size {
                Err(format!(
                    "the witness has cosigned a tree of {old} leaves, the log has {}: the log \
                     was rolled back (restored from an old backup?) or forked",
                    submission.size
                ))
            } else {
                (submission.proof)(old).map(|proof| {
                    AddCheckpoint {
                        old_size: old,
                        proof,
                        checkpoint: submission.note.to_bytes(),
                    }
                    .to_bytes()
                })
            };
            let body = match body {
                Ok(body) => body,
                Err(reason) => {
                    let _ = self.sender.send(Reply {
                        witness,
                        size: submission.size,
                        answer: Answer::Failed(reason),
                    });
                    continue;
                }
            };
            endpoint.in_flight = true;
            let (agent, url, sender) = (
                self.agent.clone(),
                format!("{}/add-checkpoint", endpoint.url),
                self.sender.clone(),
            );
            let size = submission.size;
            let wake = self.settings.on_late_answer.clone();
            let spawned = std::thread::Builder::new()
                .name("tufa-witness".into())
                .spawn(move || {
                    let answer = post(&agent, &url, &body);
                    let _ = sender.send(Reply {
                        witness,
                        size,
                        answer,
                    });
                    if let Some(wake) = wake {
                        wake();
                    }
                });
            if let Err(error) = spawned {
                endpoint.in_flight = false;
                let _ = self.sender.send(Reply {
                    witness,
                    size: submission.size,
                    answer: Answer::Failed(format!("starting a thread: {error}")),
                });
                continue;
            }
            sent += 1;
        }
        sent
    }

    /// Waits until `deadline` for the answers to `size` (`expected` of them), and returns every
    /// reply received (to other sizes too). A 409 is answered again at once, with a proof from
    /// the size the witness knows.
    pub fn wait(
        &self,
        submission: &Submission<'_>,
        mut expected: usize,
        deadline: Instant,
    ) -> Vec<Reply> {
        let receiver = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        let mut replies = Vec::new();
        while expected > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let Ok(reply) = receiver.recv_timeout(left) else {
                break;
            };
            if reply.size == submission.size {
                expected -= 1;
                if let Answer::Conflict(_) = reply.answer {
                    self.record(&reply);
                    expected += self.submit(submission, Instant::now());
                    continue;
                }
            }
            replies.push(reply);
        }
        replies
    }

    /// Every reply that arrived since the last call.
    pub fn drain(&self) -> Vec<Reply> {
        let receiver = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        receiver.try_iter().collect()
    }

    /// Records what a reply says of its witness; for a cosignature, returns the signatures
    /// worth keeping (verified when witness keys are configured) over the checkpoint `text`.
    pub fn record(&self, reply: &Reply) -> Vec<NoteSignature> {
        let mut endpoints = self.endpoints();
        let Some(endpoint) = endpoints.get_mut(reply.witness) else {
            return Vec::new();
        };
        endpoint.in_flight = false;
        match &reply.answer {
            Answer::Cosigned(signatures) => {
                endpoint.known_size = Some(endpoint.known_size.unwrap_or(0).max(reply.size));
                endpoint.status.cosigned_size =
                    Some(endpoint.status.cosigned_size.unwrap_or(0).max(reply.size));
                endpoint.status.last_error = None;
                endpoint.consecutive_failures = 0;
                endpoint.retry_at = None;
                signatures.clone()
            }
            Answer::Conflict(known) => {
                endpoint.known_size = Some(*known);
                endpoint.retry_at = None;
                Vec::new()
            }
            Answer::Failed(reason) => {
                endpoint.status.failures += 1;
                endpoint.consecutive_failures = endpoint.consecutive_failures.saturating_add(1);
                let backoff =
                    Duration::from_secs(1 << endpoint.consecutive_failures.min(6)).min(MAX_BACKOFF);
                endpoint.retry_at = Some(Instant::now() + backoff);
                if endpoint.status.last_error.as_deref() != Some(reason) {
                    tracing::warn!(
                        witness = endpoint.url,
                        size = reply.size,
                        retry_in_seconds = backoff.as_secs(),
                        "the witness did not cosign the log's checkpoint (publishing goes on \
                         without its cosignature): {reason}"
                    );
                }
                endpoint.status.last_error = Some(reason.clone());
                Vec::new()
            }
        }
    }

    /// The cosignatures among `signatures` to add to the checkpoint `text`: those that
    /// verify under a configured witness key, or, with none configured, those not claiming the
    /// log's own key name.
    pub fn keep(
        &self,
        text: &str,
        log_name: &str,
        signatures: Vec<NoteSignature>,
    ) -> Vec<NoteSignature> {
        signatures
            .into_iter()
            .take(MAX_COSIGNATURES_PER_WITNESS)
            .filter(|signature| signature.name != log_name)
            .filter(|signature| {
                self.settings.keys.is_empty()
                    || Note {
                        text: text.to_string(),
                        signatures: vec![signature.clone()],
                    }
                    .verify(&self.settings.keys)
                    .is_ok()
            })
            .collect()
    }

    pub fn wait_limit(&self) -> Duration {
        self.settings.wait
    }
}

/// Posts one `add-checkpoint` request and reads the answer, bounded in size and time.
fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Answer {
    let response = agent
        .post(url)
        .header("Content-Type", "text/plain; charset=utf-8")
        .send(body);
    let mut response = match response {
        Ok(response) => response,
        Err(error) => return Answer::Failed(format!("POST {url}: {error}")),
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = match response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
    {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => return Answer::Failed(format!("POST {url}: reading the answer: {error}")),
    };
    match status.as_u16() {
        200 => {
            let signatures: Result<Vec<NoteSignature>, _> = text
                .lines()
                .filter(|line| !line.is_empty())
                .map(NoteSignature::parse_line)
                .collect();
            match signatures {
                Ok(signatures) if !signatures.is_empty() => Answer::Cosigned(signatures),
                Ok(_) => Answer::Failed(format!("POST {url}: 200 without a cosignature")),
                Err(error) => Answer::Failed(format!("POST {url}: 200 with {error}")),
            }
        }
        409 if content_type.starts_with("text/x.tlog.size") => {
            match text.trim_end_matches('\n').parse::<u64>() {
                Ok(size) => Answer::Conflict(size),
                Err(_) => Answer::Failed(format!("POST {url}: 409 with a size that is no number")),
            }
        }
        code => {
            let reason: String = text
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            let line = status.canonical_reason().unwrap_or_default();
            Answer::Failed(format!("POST {url}: {code} {line} {reason}"))
        }
    }
}
