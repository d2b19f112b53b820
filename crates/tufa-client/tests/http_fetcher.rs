//! The HTTP fetcher against misbehaving servers on 127.0.0.1: endless bodies, lying lengths,
//! slow drips and error statuses.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use tufa_client::{FetchError, Fetcher, HttpFetcher};

/// Serves one connection with `respond`, and returns the URL to fetch.
fn serve(respond: impl FnOnce(&mut std::net::TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/file", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        respond(&mut stream);
    });
    url
}

#[test]
fn endless_body_is_cut_off_at_the_limit() {
    let url = serve(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let chunk = [b'x'; 8192];
        while stream.write_all(&chunk).is_ok() {}
    });
    assert_eq!(
        HttpFetcher::default().fetch(&url, 100_000),
        Err(FetchError::TooLarge)
    );
}

#[test]
fn announced_length_over_the_limit_is_refused_before_reading() {
    let url = serve(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
    });
    assert_eq!(
        HttpFetcher::default().fetch(&url, 10),
        Err(FetchError::TooLarge)
    );
}

#[test]
fn a_body_exactly_at_the_limit_is_accepted() {
    let url = serve(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    });
    assert_eq!(
        HttpFetcher::default().fetch(&url, 5).unwrap(),
        b"hello".to_vec()
    );
}

#[test]
fn error_statuses_are_reported() {
    let url = serve(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    });
    assert_eq!(
        HttpFetcher::default().fetch(&url, 10),
        Err(FetchError::Status(404))
    );
}

#[test]
fn slow_retrieval_is_stopped_by_the_deadline() {
    let url = serve(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        for _ in 0..1000 {
            if stream.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let started = Instant::now();
    let result = HttpFetcher::new(Duration::from_secs(1)).fetch(&url, 1000);
    assert!(
        matches!(result, Err(FetchError::Transport(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
