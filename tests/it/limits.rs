//! Slow and stalled clients: a body that stops arriving, headers that never finish, more
//! connections than the cap. Each must be cut off or made to wait without blocking others.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use webhooker::store::{Notice, WriteOp};

use crate::support::{TestApp, wait_until};

/// Opens a raw connection to the app.
async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.app().local_addr();
    TcpStream::connect(addr).await.unwrap()
}

/// The loopback address `127.0.0.{client}`. On Linux all of 127/8 is loopback, so a test
/// can be as many clients as it needs: the server counts each address as one.
fn client_addr(client: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, client))
}

/// Opens a raw connection to the app from `client_addr(client)`.
async fn connect_from(app: &TestApp, client: u8) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(client_addr(client), 0))
        .unwrap();
    socket.connect(app.app().local_addr()).await.unwrap()
}

/// An HTTP client whose connections come from `client_addr(client)`.
fn http_from(client: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(client_addr(client))
        .build()
        .unwrap()
}

/// Writes `piece` bytes every `every` until the server stops reading, as a sender that
/// trickles its body in does; gives up after 120 s, the longest a body may take.
fn trickle(mut tx: OwnedWriteHalf, piece: usize, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let piece = vec![b't'; piece];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while tokio::time::Instant::now() < deadline {
            if tx.write_all(&piece).await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// The head of a POST to `path` declaring `declared` body bytes, which waits for
/// `100 Continue` (sent once the handler has reserved memory and begun reading).
fn expect_continue_head(path: &str, declared: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\nExpect: 100-continue\r\n\r\n"
    )
}

/// Starts a POST declaring `declared` body bytes, waits for `100 Continue` (the handler has
/// reserved memory and begun reading), sends `sent` bytes, and leaves the rest unsent.
async fn stalled_post(app: &TestApp, path: &str, declared: usize, sent: usize) -> TcpStream {
    stalled_post_from(app, 1, path, declared, sent).await
}

/// [`stalled_post`] from `client_addr(client)`.
async fn stalled_post_from(
    app: &TestApp,
    client: u8,
    path: &str,
    declared: usize,
    sent: usize,
) -> TcpStream {
    let mut s = connect_from(app, client).await;
    s.write_all(expect_continue_head(path, declared).as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
    s.write_all(&vec![b'x'; sent]).await.unwrap();
    s
}

/// Asserts that `task` is still waiting a moment later. Used only where it cannot finish
/// while what holds it lasts, so this is no bet on timing.
async fn assert_held<T>(task: &mut tokio::task::JoinHandle<T>, what: &str) {
    let waited = tokio::time::timeout(Duration::from_millis(300), task).await;
    assert!(waited.is_err(), "{what}");
}

/// The result of `task`, which must finish within `limit`.
async fn finished<T>(task: tokio::task::JoinHandle<T>, limit: Duration, what: &str) -> T {
    tokio::time::timeout(limit, task)
        .await
        .expect(what)
        .unwrap()
}

#[tokio::test]
async fn small_webhooks_pass_while_large_uploads_fill_the_budget() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("stalls").await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    // Eight senders, two from each of four addresses (a client's share is a quarter),
    // declare the 10 MiB maximum and stall after 1 KB: they hold all of the 80 MiB budget
    // until their bodies are cut off.
    let mut stalled = Vec::new();
    for client in [1, 1, 2, 2, 3, 3, 4, 4] {
        stalled.push(stalled_post_from(&app, client, &path, 10 * 1024 * 1024, 1000).await);
    }
    // Small bodies need no budget and are served at once.
    let r = app.http.post(&url).body("on time").send().await.unwrap();
    assert_eq!(r.status(), 200, "a small webhook is served meanwhile");
    // A large upload from a fifth client waits for room instead of holding a part of it...
    let client = http_from(5);
    let large_url = url.clone();
    let mut large = tokio::spawn(async move {
        client
            .post(large_url)
            .body(vec![b'L'; 1024 * 1024])
            .send()
            .await
            .map(|r| r.status())
    });
    assert_held(
        &mut large,
        "a large body was read although the budget was full",
    )
    .await;
    // ...and goes through once the stalled senders are gone.
    drop(stalled);
    let status = finished(
        large,
        Duration::from_secs(15),
        "the large upload never got room",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(
        events["total"], 2,
        "nothing stored from the stalled senders"
    );
    app.stop().await;
}

/// A sender that sends its body and hangs up before the answer ends its request, but not
/// the write it queued: the body's room in the ingest memory budget must stay taken until
/// the writer is done with the body, or gone senders could queue thousands of bodies.
#[tokio::test]
async fn bodies_of_senders_that_hung_up_hold_the_budget_until_written() {
    const MAX: usize = 10 * 1024 * 1024;
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("hang-ups").await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    app.send(&url, b"opens the event file").await;
    let events = app.app().store().events(wh.parse().unwrap()).unwrap();
    // Hold the writer: this write's notice is a message on a channel without room, so the
    // writer waits until the test takes it.
    let (hold, release) = crossbeam_channel::bounded(0);
    events
        .submit(
            WriteOp::AddDeliveries(Vec::new()),
            Notice::message(&hold, ()),
        )
        .unwrap();

    // Eight senders, two from each of four addresses (a client's share is a quarter), send
    // the 10 MiB maximum, filling the 80 MiB budget, and hang up once their bodies wait for
    // the writer.
    let body = vec![b'h'; MAX];
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX}\r\n\r\n");
    let mut gone = Vec::new();
    for client in [1, 1, 2, 2, 3, 3, 4, 4] {
        let mut s = connect_from(&app, client).await;
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        gone.push(s);
    }
    let all_queued = wait_until(Duration::from_secs(30), || async { events.queued() == 8 }).await;
    assert!(all_queued, "{} bodies queued", events.queued());
    drop(gone);

    // A ninth body, from a fifth client, finds no room while theirs are queued ...
    let mut late = connect_from(&app, 5).await;
    let late_head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    late.write_all(late_head.as_bytes()).await.unwrap();
    let (mut from_server, mut to_server) = late.into_split();
    let mut continued = tokio::spawn(async move {
        let mut buf = [0u8; 25];
        from_server
            .read_exact(&mut buf)
            .await
            .map(|_| (from_server, buf))
    });
    assert_held(
        &mut continued,
        "the bodies of senders that hung up left the budget while still queued",
    )
    .await;
    // ... and gets it once the writer has stored them.
    release.recv().unwrap().1.unwrap();
    let (from_server, buf) = finished(
        continued,
        Duration::from_secs(20),
        "no room after the writes",
    )
    .await
    .unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
    to_server.write_all(&body).await.unwrap();
    let mut late = from_server.reunite(to_server).unwrap();
    let answer = read_to_close(&mut late, Duration::from_secs(20)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let stored = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(
        stored["total"], 10,
        "the hung-up senders' events are stored"
    );
    app.stop().await;
}

#[tokio::test]
async fn parallel_large_uploads_do_not_lock_each_other_out() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("parallel").await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    let addr = app.app().local_addr();
    // 24 × 4 MiB is more than the 80 MiB budget. Each sends half, pauses, then the rest:
    // were the budget taken piece by piece, every upload could hold half and wait for the
    // rest until all gave up with 503. They come from six addresses, four each, so no
    // client's share (a quarter of the budget) is what they wait for.
    const SIZE: usize = 4 * 1024 * 1024;
    let uploads: Vec<_> = (0..24u8)
        .map(|i| {
            let path = path.clone();
            tokio::spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket
                    .bind(SocketAddr::new(client_addr(1 + i % 6), 0))
                    .unwrap();
                let mut s = socket.connect(addr).await.unwrap();
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n"
                );
                s.write_all(head.as_bytes()).await.unwrap();
                let half = vec![b'p'; SIZE / 2];
                // The server may answer early (503) and close; the status tells.
                let _ = s.write_all(&half).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = s.write_all(&half).await;
                let answer = read_to_close(&mut s, Duration::from_secs(30)).await;
                answer.get(9..12).unwrap_or("").to_string()
            })
        })
        .collect();
    for upload in uploads {
        assert_eq!(upload.await.unwrap(), "200");
    }
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(events["total"], 24);
    app.stop().await;
}

#[tokio::test]
async fn a_body_in_thousands_of_one_byte_chunks_is_refused() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("chunks").await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    let mut s = connect(&app).await;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20_000 {
        req.extend_from_slice(b"1\r\nx\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let _ = s.write_all(&req).await;
    let answer = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("tiny pieces"), "{answer}");
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(events["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_nothing_is_stored() {
    let app = TestApp::start_with(|c| c.http.body_idle_timeout = Duration::from_millis(300)).await;
    let (wh, url) = app.webhook("stall").await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    let mut s = stalled_post(&app, &path, 5000, 1000).await;
    let answer = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error""#), "{answer}");
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(events["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_trickles_past_the_read_deadline_gets_408() {
    let app = TestApp::start_with(|c| {
        c.http.body_idle_timeout = Duration::from_secs(5);
        c.http.body_read_timeout = Duration::from_millis(800);
    })
    .await;
    let (wh, url) = app.webhook("trickle").await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    let s = stalled_post(&app, &path, 1000, 1).await;
    let (mut rx, tx) = s.into_split();
    // One byte every 50 ms never trips the idle timeout, only the overall deadline.
    let trickle = trickle(tx, 1, Duration::from_millis(50));
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), rx.read_to_end(&mut answer)).await;
    trickle.abort();
    assert!(read.is_ok(), "the server did not close the connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(events["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn half_sent_headers_and_idle_connections_are_closed() {
    let app =
        TestApp::start_with(|c| c.http.header_read_timeout = Duration::from_millis(300)).await;
    // Headers that never finish (slowloris).
    let mut slow = connect(&app).await;
    slow.write_all(b"POST /webhook/x HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // A connection that never sends anything.
    let mut silent = connect(&app).await;
    read_to_close(&mut slow, Duration::from_secs(10)).await;
    read_to_close(&mut silent, Duration::from_secs(10)).await;
    // The server still answers complete requests.
    let r = app
        .http
        .get(app.url("/.well-known/healthcheck"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = TestApp::start_with(|c| c.http.max_connections = 2).await;
    // Two connections that send nothing hold both slots.
    let first = connect(&app).await;
    let _second = connect(&app).await;
    let client = reqwest::Client::new();
    let health = app.url("/.well-known/healthcheck");
    let mut request = tokio::spawn(async move { client.get(health).send().await });
    // While both slots are held the request cannot be served, however long we look.
    assert_held(&mut request, "served beyond the connection cap").await;
    drop(first);
    let served = finished(
        request,
        Duration::from_secs(10),
        "not served after a slot was freed",
    )
    .await
    .unwrap();
    assert_eq!(served.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn one_client_cannot_take_every_connection() {
    let app = TestApp::start_with(|c| c.http.max_connections_per_client = Some(2)).await;
    let first = connect(&app).await;
    let _second = connect(&app).await;
    // The third connection from the same address is answered 429 and closed.
    let mut third = connect(&app).await;
    let answer = read_to_close(&mut third, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"], "too many open connections");
    // Closing one gives the share back.
    drop(first);
    let client = reqwest::Client::new();
    let health = app.url("/.well-known/healthcheck");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = client.get(&health).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "share never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_responses_is_dropped() {
    let app = TestApp::start_with(|c| c.http.write_timeout = Duration::from_millis(500)).await;
    // Pipeline requests for a large asset and never read: the socket buffers fill, the
    // server's writes stall, and the write timeout ends the connection.
    let mut s = connect(&app).await;
    let login = app.http.get(app.url("/login")).send().await.unwrap();
    let html = login.text().await.unwrap();
    let start = html.find("/s/").expect("an asset link");
    let end = start + html[start..].find('"').unwrap();
    let asset = &html[start..end];
    let request = format!("GET {asset} HTTP/1.1\r\nHost: x\r\n\r\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let closed = loop {
        // Writing fails once the server has given up on us and reset the connection.
        match tokio::time::timeout(Duration::from_secs(1), s.write_all(request.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break true,
            // Our own send buffer is full: the server stopped reading; wait for its timeout.
            Err(_) => {}
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        let mut probe = [0u8; 1];
        // Peeking returns 0 (EOF) or an error once the server closed; data means still open.
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(10), s.peek(&mut probe)).await
        {
            break true;
        }
    };
    assert!(
        closed,
        "the server kept a connection that never read its responses"
    );
    app.stop().await;
}

/// Sends one request with a single `X-Big` header of `value_len` bytes, all at once, and
/// returns the server's answer.
async fn request_with_header(app: &TestApp, path: &str, value_len: usize) -> String {
    let mut s = connect(app).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\nX-Big: {}\r\n\r\n{{}}",
        "b".repeat(value_len)
    );
    // The server may answer before it has read everything and close; the answer tells.
    let _ = s.write_all(head.as_bytes()).await;
    read_to_close(&mut s, Duration::from_secs(10)).await
}

/// The README promises that a request head must fit in 64 KiB, but a single 112 KiB
/// header was accepted: hyper checks its read-buffer limit only while a head is still
/// incomplete, and one read may fill the buffer well past that limit with a whole head.
#[tokio::test]
async fn a_request_head_over_64_kib_gets_431() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("heads").await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    // Before the fix, which of these got through depended on how the bytes arrived: here
    // 65 to 100 KiB did, elsewhere 112 KiB did.
    for kib in [112, 100, 65] {
        let answer = request_with_header(&app, &path, kib * 1024).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{kib} KiB: {answer:.200}"
        );
    }
    let answer = request_with_header(&app, &path, 60 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "60 KiB: {answer:.200}");
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(events["total"], 1, "only the 60 KiB request is stored");
    app.stop().await;
}

/// One address that declared maximum-size bodies and trickled them in held the whole
/// ingest memory budget: every body over 64 KiB from anyone else waited 10 s and got 503,
/// for as long as it kept reconnecting. A client now holds at most a quarter of the budget.
#[tokio::test]
async fn one_client_cannot_hold_the_body_budget_of_others() {
    const MAX: usize = 10 * 1024 * 1024;
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("greedy").await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    // Its share of the 80 MiB budget fits two maximum-size bodies: those start, and trickle
    // in fast enough to keep their room.
    let mut trickling = Vec::new();
    for _ in 0..2 {
        let (rx, tx) = stalled_post_from(&app, 1, &path, MAX, 1000)
            .await
            .into_split();
        trickling.push((rx, trickle(tx, 1024, Duration::from_millis(100))));
    }
    // Six more from the same address declare the maximum too.
    let mut over_share = Vec::new();
    for _ in 0..6 {
        let mut s = connect_from(&app, 1).await;
        s.write_all(expect_continue_head(&path, MAX).as_bytes())
            .await
            .unwrap();
        over_share.push(s);
    }
    // Another client's maximum-size body is stored meanwhile ...
    let r = http_from(2)
        .post(&url)
        .body(vec![b'o'; MAX])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another client's large body was refused");
    // ... and none of the six got room: they wait for their own client's share (and get 503
    // after 10 s, as when the whole budget is taken).
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    for mut s in over_share {
        let mut buf = [0u8; 25];
        if let Ok(read) = tokio::time::timeout_at(until, s.read_exact(&mut buf)).await {
            assert!(
                read.is_err() || !buf.starts_with(b"HTTP/1.1 100"),
                "a client got more than its share"
            );
        }
    }
    for (_rx, trickle) in trickling {
        trickle.abort();
    }
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(events["total"], 1);
    app.stop().await;
}

/// A sender that declared a large body and trickled it in (a byte every 5 s kept clear of
/// the 15 s pause limit) held its room in the memory budget for up to 120 s. A body holding
/// room must now bring `body_min_rate` in every `body_rate_window`, or give the room back.
#[tokio::test]
async fn a_body_filling_its_room_too_slowly_gets_408_and_gives_the_room_back() {
    const MAX: usize = 10 * 1024 * 1024;
    // 64 KiB in every second.
    let app = TestApp::start_with(|c| {
        c.http.body_min_rate = 64 * 1024;
        c.http.body_rate_window = Duration::from_secs(1);
    })
    .await;
    let (wh, url) = app.webhook("slow").await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    // A body that keeps pace, far above the minimum, for longer than a window ...
    let steady = {
        let (mut rx, mut tx) = stalled_post_from(&app, 2, &path, 2 * 1024 * 1024, 0)
            .await
            .into_split();
        tokio::spawn(async move {
            for _ in 0..32 {
                tx.write_all(&[b's'; 64 * 1024]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut answer = Vec::new();
            let _ = rx.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        })
    };
    // ... while two maximum-size bodies, this client's whole share, trickle in a byte
    // every 50 ms.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let (rx, tx) = stalled_post(&app, &path, MAX, 1).await.into_split();
        slow.push((rx, trickle(tx, 1, Duration::from_millis(50))));
    }
    for (mut rx, trickle) in slow {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), rx.read_to_end(&mut answer)).await;
        trickle.abort();
        assert!(read.is_ok(), "a body filling its room too slowly kept it");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("too slowly"), "{answer}");
    }
    // Their room is back: the same client's maximum-size body is stored.
    let r = app
        .http
        .post(&url)
        .body(vec![b'f'; MAX])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let steady = finished(steady, Duration::from_secs(20), "the steady body hung").await;
    assert!(steady.starts_with("HTTP/1.1 200"), "{steady}");
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(events["total"], 2, "nothing stored from the slow bodies");
    app.stop().await;
}
