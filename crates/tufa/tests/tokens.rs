//! API tokens against a real `tufa serve`: listed, revoked and expired while the server runs,
//! failed authentication backed off per client address, and no token ever in the server's log.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

mod common;

use common::{TUFA, ok, output_text, token, tufa, twine};
use tufa_testkit::http::{self, RawResponse};
use tufa_testkit::{Project, PythonEnv, TufaServer, minimal_wheel};

/// Uploads a minimal wheel of `project` `version` as twine would, over `stream` if given.
fn upload(
    server: &TufaServer,
    stream: Option<TcpStream>,
    token: &str,
    project: &str,
    version: &str,
) -> RawResponse {
    let (content_type, body) =
        http::wheel_upload(project, version, &minimal_wheel(project, version));
    let auth = http::basic_auth(token);
    let headers = [
        ("Content-Type", content_type.as_str()),
        ("Authorization", auth.as_str()),
    ];
    let url = server.upload_url();
    match stream {
        Some(stream) => http::try_request_on(stream, "POST", &url, &headers, &body).unwrap(),
        None => http::request("POST", &url, &headers, &body),
    }
}

/// A connection to `server` from another loopback address than the default 127.0.0.1, so the
/// server sees another client.
fn connect_from(source: &str, server: &TufaServer) -> TcpStream {
    let target: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(format!("{source}:0").parse().unwrap())?;
            socket.connect(target).await?.into_std()
        })
        .unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

fn list(data: &Path) -> String {
    ok(
        tufa(&["token", "list", "--data", data.to_str().unwrap()]),
        "tufa token list",
    )
}

/// The line of `tufa token list` for token `id`.
fn listed(list: &str, id: &str) -> String {
    list.lines()
        .find(|line| line.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("token {id} not listed:\n{list}"))
        .to_string()
}

/// Waits until the server's log has every request so far (a marker request logged after them),
/// then checks that no token is in it.
fn assert_not_logged(server: &TufaServer, tokens: &[&str]) {
    http::get(&format!("{}/simple/end-of-test/", server.url), &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server.log().contains("/simple/end-of-test/") {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log();
    for token in tokens {
        let secret = token.trim_start_matches("tufa-");
        assert!(
            !log.contains(secret),
            "a token is in the server's log:\n{log}"
        );
    }
}

#[test]
fn revoked_and_expired_tokens_are_refused_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    let alice = token(&data, "alice", None);
    let bob = token(&data, "bob", Some("bobs-project"));
    let month = ok(
        tufa(&[
            "token",
            "create",
            "--data",
            data.to_str().unwrap(),
            "--user",
            "carol",
            "--expires",
            "30d",
        ]),
        "tufa token create --expires 30d",
    )
    .trim()
    .to_string();
    let brief = ok(
        tufa(&[
            "token",
            "create",
            "--data",
            data.to_str().unwrap(),
            "--user",
            "dave",
            "--expires",
            "1s",
        ]),
        "tufa token create --expires 1s",
    )
    .trim()
    .to_string();

    // Bob's token works, then is revoked while the server runs.
    assert_eq!(
        upload(&server, None, &bob, "bobs-project", "1.0").status,
        200
    );
    let before = list(&data);
    assert!(listed(&before, "2").contains("bobs-project"), "{before}");
    assert!(listed(&before, "2").ends_with("active"), "{before}");
    let revoked = ok(
        tufa(&["token", "revoke", "--data", data.to_str().unwrap(), "2"]),
        "tufa token revoke",
    );
    assert!(revoked.contains("revoked token 2"), "{revoked}");
    let refused = upload(&server, None, &bob, "bobs-project", "1.1");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused.reason.contains("(ID 2) was revoked"),
        "the reason names the revocation: {refused:?}"
    );

    // Dave's token expires one second after it was made.
    std::thread::sleep(Duration::from_millis(1100));
    let expired = upload(&server, None, &brief, "daves-project", "1.0");
    assert_eq!(expired.status, 403, "{expired:?}");
    assert!(
        expired.reason.contains("(ID 4) expired at"),
        "the reason names the expiry: {expired:?}"
    );

    // Tokens that are neither revoked nor expired still work; twine shows the server's reason.
    let env = PythonEnv::shared();
    let built = Project {
        name: "carols-project",
        version: "1.0",
        dependencies: &[],
        payload: "carol",
    }
    .build(env, dir.path());
    ok(twine(&server, &month, &[&built.wheel], &[]), "twine upload");
    let twine_refused = twine(&server, &brief, &[&built.sdist], &[]);
    assert!(!twine_refused.status.success());
    assert!(
        output_text(&twine_refused).contains("expired at"),
        "{}",
        output_text(&twine_refused)
    );
    assert_eq!(
        upload(&server, None, &alice, "alices-project", "1.0").status,
        200
    );

    let after = list(&data);
    let header = after.lines().next().unwrap();
    for column in [
        "ID",
        "USER",
        "PROJECT",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "STATUS",
    ] {
        assert!(header.contains(column), "{after}");
    }
    assert!(listed(&after, "1").ends_with("active"), "{after}");
    assert!(listed(&after, "2").ends_with("revoked"), "{after}");
    assert!(listed(&after, "3").ends_with("active"), "{after}");
    assert!(!listed(&after, "3").contains("never  never"), "{after}");
    assert!(listed(&after, "4").ends_with("expired"), "{after}");
    assert!(
        listed(&after, "1").contains("alice") && !listed(&after, "1").contains("never  active"),
        "alice's token shows when it was last used: {after}"
    );
    for secret in [&alice, &bob, &month, &brief] {
        assert!(!after.contains(secret.as_str()), "the list shows a token");
    }
    assert_not_logged(&server, &[&alice, &bob, &month, &brief]);
}

#[test]
fn token_commands_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    token(&data, "alice", None);
    let data = data.to_str().unwrap();
    for (expires, says) in [
        ("2000-01-01", "in the past"),
        ("2000-01-01T00:00:00Z", "in the past"),
        ("30", "no unit"),
        ("30y", "a duration (90m, 12h, 30d)"),
        ("0d", "at once"),
    ] {
        let output = tufa(&[
            "token",
            "create",
            "--data",
            data,
            "--user",
            "bob",
            "--expires",
            expires,
        ]);
        assert!(!output.status.success(), "--expires {expires} was accepted");
        assert!(
            output_text(&output).contains(says),
            "--expires {expires}: {}",
            output_text(&output)
        );
    }
    let dated = ok(
        tufa(&[
            "token",
            "create",
            "--data",
            data,
            "--user",
            "bob",
            "--expires",
            "2999-01-31",
        ]),
        "tufa token create --expires DATE",
    );
    assert!(dated.starts_with("tufa-"), "{dated}");
    assert!(
        listed(&list(Path::new(data)), "2").contains("2999-01-31T00:00:00Z"),
        "{}",
        list(Path::new(data))
    );
    for (id, says) in [("99", "no token with ID 99"), ("x", "not a token ID")] {
        let output = tufa(&["token", "revoke", "--data", data, id]);
        assert!(!output.status.success());
        assert!(
            output_text(&output).contains(says),
            "{}",
            output_text(&output)
        );
    }
    ok(tufa(&["token", "revoke", "--data", data, "1"]), "revoke");
    let again = ok(
        tufa(&["token", "revoke", "--data", data, "1"]),
        "revoke again",
    );
    assert!(again.contains("already revoked"), "{again}");
}

#[test]
fn failed_authentication_backs_off_per_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    let good = token(&data, "alice", None);
    let guesses: Vec<String> = (0..10)
        .map(|i| format!("tufa-{:0>43}", format!("guess{i}")))
        .collect();
    for guess in &guesses {
        let refused = upload(
            &server,
            Some(connect_from("127.0.0.2", &server)),
            guess,
            "guessed",
            "1.0",
        );
        assert_eq!(refused.status, 403, "{refused:?}");
    }
    // The address that guessed is refused even with a good token, and told when to retry.
    let backed_off = upload(
        &server,
        Some(connect_from("127.0.0.2", &server)),
        &good,
        "guessed",
        "1.0",
    );
    assert_eq!(backed_off.status, 429, "{backed_off:?}");
    assert!(
        backed_off
            .reason
            .contains("Too many failed authentications from this address"),
        "{backed_off:?}"
    );
    let retry_after: u64 = backed_off
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{backed_off:?}");

    // A client elsewhere is unaffected: twine uploads with the good token.
    let built = Project {
        name: "elsewhere",
        version: "1.0",
        dependencies: &[],
        payload: "fine",
    }
    .build(PythonEnv::shared(), dir.path());
    ok(twine(&server, &good, &[&built.wheel], &[]), "twine upload");
    server.wait_until_signed();

    // Tokens pasted into a URL are kept out of the access log too.
    http::get(&format!("{}/simple/{good}/", server.url), &[]);
    let mut all: Vec<&str> = guesses.iter().map(String::as_str).collect();
    all.push(&good);
    let log = server.log_containing("/simple/tufa-[redacted]/");
    assert!(log.contains("/simple/tufa-[redacted]/"), "{log}");
    assert_not_logged(&server, &all);
}
