//! The eBPF acceleration end to end: the real `sluice` binary with
//! `--ebpf on|auto|off`, real backends on 127.0.0.1, the real kernel.
//!
//! Kernel side: `ebpf/sluice-ebpf` (sockops + sk_msg loopback bypass,
//! sk_skb stream-verdict splice of upgraded tunnels);
//! loader: `proxy/src/bpf.rs`. The tests that load programs need root (CI
//! runs as root); without it they print a note and return.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: panics are failures"
)]

mod ops_support;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ops_support::{Sluice, gateway, route, slices, sum};
use support::{WAIT, free_port, temp_dir};

/// The large response's size.
const BIG: usize = 64 << 20;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Skips (with a note) a test that loads eBPF programs when not root.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("note: not root; skipping a test that loads eBPF programs");
            return;
        }
    };
}

/// The byte at `i` of the large body (not periodic at buffer sizes, so a
/// lost, duplicated or reordered block shows).
fn body_byte(i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (i / 4093) as u8
}

/// A backend on 127.0.0.1 that answers every request with `BIG` bytes of
/// [`body_byte`] (Content-Length, keep-alive).
fn big_backend() -> u16 {
    big_backend_with_tail(b"")
}

/// [`big_backend`], writing `tail` right after each body, in the same
/// write: bytes no request asked for.
fn big_backend_with_tail(tail: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut body: Vec<u8> = (0..BIG).map(body_byte).collect();
    body.extend_from_slice(tail);
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    // Read one request head.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
                        BIG
                    );
                    if writer.write_all(head.as_bytes()).is_err()
                        || writer.write_all(&body).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Route files: one listener on a free port, everything to `backend`.
fn inputs(tag: &str, backend: u16) -> (Vec<PathBuf>, u16) {
    let dir = temp_dir(tag);
    let port = free_port();
    let files = vec![dir.join("gateway.yaml"), dir.join("routes.yaml")];
    std::fs::write(&files[0], gateway(port)).unwrap();
    std::fs::write(
        &files[1],
        format!("{}{}", route(&[("big", 1)]), slices(&[("big", backend)])),
    )
    .unwrap();
    (files, port)
}

/// Reads a `200` response head; returns its Content-Length.
fn read_ok_head(reader: &mut impl BufRead) -> Option<usize> {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return length;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = Some(v.trim().parse::<usize>().unwrap());
        }
    }
}

/// GETs `/` through the proxy; checks the body against [`body_byte`]
/// block by block as it arrives; returns the body length.
fn get_big(port: u16) -> usize {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: big.example\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_ok_head(&mut reader), Some(BIG));
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, body_byte(at + k), "byte {} differs", at + k);
        }
        at += n;
    }
    at
}

fn pin_dir(pid: u32) -> PathBuf {
    Path::new("/sys/fs/bpf/sluice").join(pid.to_string())
}

/// The pid of a sluice started with `--ebpf on`, from its start-up line
/// (`maps pinned in /sys/fs/bpf/sluice/<pid>`).
fn pid_of(sluice: &Sluice) -> u32 {
    let log = sluice.log_text();
    let at = log
        .find("maps pinned in /sys/fs/bpf/sluice/")
        .unwrap_or_else(|| panic!("no pin directory in the log:\n{log}"));
    let rest = &log[at + "maps pinned in /sys/fs/bpf/sluice/".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// `--ebpf on` against a backend on 127.0.0.1: a 64 MiB response arrives
/// byte-identical, the kernel counters account for it on both legs
/// (redirected by the sk_msg bypass backend → proxy and proxy → client: the
/// test's client socket is a local client of a sluice listener, recorded
/// by sockops), and the start-up line says what is active.
#[test]
fn on_bypasses_loopback_backend_and_counts_a_64mib_response() {
    require_root!();
    let backend = big_backend();
    let (files, port) = inputs("ebpf-big", backend);
    let sluice = Sluice::start(
        &files,
        port,
        2,
        &["--ebpf", "on", "--ebpf-local-clients", "true"],
    );
    let log = sluice.log_text();
    assert!(
        log.contains("eBPF acceleration (--ebpf on): loopback bypass active (backend leg and local clients' leg"),
        "{log}"
    );
    assert_eq!(log.matches("eBPF acceleration").count(), 1, "{log}");

    assert_eq!(get_big(port), BIG);
    assert_eq!(get_big(port), BIG); // again, on a pooled backend connection

    let text = sluice.wait_metrics("the response's bytes redirected on both legs", |m| {
        sum(m, "sluice_ebpf_bytes_total", &["verdict=\"redirected\""]) >= (4 * BIG) as f64
    });
    for line in text.lines().filter(|l| l.starts_with("sluice_ebpf")) {
        eprintln!("{line}");
    }
    let redirected = sum(
        &text,
        "sluice_ebpf_bytes_total",
        &["verdict=\"redirected\""],
    );
    let passed = sum(&text, "sluice_ebpf_bytes_total", &["verdict=\"passed\""]);
    // Both bodies twice in the kernel: backend → proxy, then proxy →
    // client; plus heads (both ways, both legs).
    assert!(redirected >= (4 * BIG) as f64, "{text}");
    assert!(redirected < (4 * BIG + (64 << 10)) as f64, "{text}");
    // At most the requests took the TCP stack (a client that writes before
    // sluice's end is recorded keeps the stack for that direction).
    assert!(passed < (64 << 10) as f64, "{text}");
    assert!(
        sum(
            &text,
            "sluice_ebpf_sockets_total",
            &["side=\"local_client\""]
        ) >= 2.0,
        "{text}"
    );
    assert!(
        sum(
            &text,
            "sluice_ebpf_messages_total",
            &["verdict=\"redirected\""]
        ) > 0.0
    );
    assert!(
        sum(&text, "sluice_ebpf_sockets_total", &["side=\"upstream\""]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&text, "sluice_ebpf_sockets_total", &["side=\"backend\""]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&text, "sluice_ebpf_sockets_total", &["side=\"client\""]) >= 2.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "sluice_ebpf_socket_errors_total", &[]),
        0.0,
        "{text}"
    );
    assert_eq!(
        sum(
            &text,
            "sluice_ebpf_active",
            &["acceleration=\"loopback_bypass\""]
        ),
        1.0
    );
}

/// `--ebpf-local-clients false`: only the backend leg is bypassed; neither
/// end of the client connection is recorded, so proxy → client takes the
/// plain TCP stack, without sk_msg (the bytes are the same).
#[test]
fn local_clients_false_bypasses_the_backend_leg_only() {
    require_root!();
    let backend = big_backend();
    let (files, port) = inputs("ebpf-backend-only", backend);
    let sluice = Sluice::start(
        &files,
        port,
        1,
        &["--ebpf", "on", "--ebpf-local-clients", "false"],
    );
    let log = sluice.log_text();
    assert!(log.contains("backend leg only"), "{log}");
    assert_eq!(get_big(port), BIG);
    let text = sluice.wait_metrics("the response's bytes counted", |m| {
        sum(m, "sluice_ebpf_bytes_total", &["verdict=\"redirected\""]) >= BIG as f64
    });
    let redirected = sum(
        &text,
        "sluice_ebpf_bytes_total",
        &["verdict=\"redirected\""],
    );
    assert!(redirected < (2 * BIG) as f64, "{text}");
    // Neither end of the client connection is recorded: sluice's writes to
    // its client do not run sk_msg at all.
    for side in ["side=\"local_client\"", "side=\"client\""] {
        assert_eq!(
            sum(&text, "sluice_ebpf_sockets_total", &[side]),
            0.0,
            "{side}: {text}"
        );
    }
    assert!(
        sum(&text, "sluice_ebpf_bytes_total", &["verdict=\"passed\""]) < (BIG / 64) as f64,
        "{text}"
    );
}

/// `--ebpf off`: the same bytes, no programs, no eBPF counters; the body
/// is copied in userspace (all of it but what came with the head).
#[test]
fn off_serves_the_same_bytes_without_programs() {
    let backend = big_backend();
    let (files, port) = inputs("ebpf-off", backend);
    let sluice = Sluice::start(&files, port, 1, &["--ebpf", "off"]);
    assert_eq!(get_big(port), BIG);
    let log = sluice.log_text();
    assert!(log.contains("eBPF acceleration off (--ebpf off)"), "{log}");
    let text = sluice.wait_metrics("the body counted", |m| {
        sum(
            m,
            "sluice_response_body_bytes_total",
            &["path=\"userspace\""],
        ) > 0.0
    });
    assert!(!text.contains("sluice_ebpf_bytes"), "{text}");
    let userspace = sum(
        &text,
        "sluice_response_body_bytes_total",
        &["path=\"userspace\""],
    );
    assert!(userspace >= (BIG - (64 << 10)) as f64, "{text}");
    assert!(userspace <= BIG as f64, "{text}");
    assert_eq!(
        sum(
            &text,
            "sluice_response_body_bytes_total",
            &["path=\"kernel\""]
        ),
        0.0,
        "{text}"
    );
}

/// sluice with the response splice, on a backend of 64 MiB bodies.
fn response_splice_sluice(tag: &str) -> (Sluice, u16) {
    response_splice_sluice_on(tag, big_backend())
}

/// sluice with the response splice, on `backend`.
fn response_splice_sluice_on(tag: &str, backend: u16) -> (Sluice, u16) {
    let (files, port) = inputs(tag, backend);
    let sluice = Sluice::start(
        &files,
        port,
        1,
        &["--ebpf", "on", "--ebpf-splice-responses"],
    );
    (sluice, port)
}

/// A keep-alive client connection that has sent `requests` `GET /`s:
/// its writing half and its buffered reading half.
fn send_gets(port: u16, requests: usize) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT_READ)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let request = b"GET / HTTP/1.1\r\nhost: big.example\r\n\r\n";
    writer.write_all(&request.repeat(requests)).unwrap();
    (writer, BufReader::new(stream))
}

/// Reads one 64 MiB response from `reader`, `chunk` bytes at a time with
/// `pause` after each read, checking every byte.
fn read_big_response(reader: &mut BufReader<TcpStream>, what: &str, chunk: usize, pause: Duration) {
    assert_eq!(read_ok_head(reader), Some(BIG), "{what}");
    let mut buf = vec![0u8; chunk];
    let mut at = 0;
    while at < BIG {
        let want = buf.len().min(BIG - at);
        let got = reader.read(&mut buf[..want]).unwrap();
        assert!(got > 0, "{what}: the body ended at {at}");
        for (k, &b) in buf[..got].iter().enumerate() {
            assert_eq!(b, body_byte(at + k), "{what}: byte {} differs", at + k);
        }
        at += got;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// Response body bytes by what moved them, from `/metrics` once `bodies`
/// bytes (less what came with each of `count` heads) are accounted for.
fn response_body_bytes(sluice: &Sluice, bodies: usize, count: usize) -> (f64, f64, String) {
    let floor = (bodies - count * (64 << 10)) as f64;
    let text = sluice.wait_metrics("the bodies accounted for", |m| {
        sum(m, "sluice_response_body_bytes_total", &[]) >= floor
    });
    for line in text
        .lines()
        .filter(|l| l.starts_with("sluice_ebpf_bytes") || l.starts_with("sluice_response"))
    {
        eprintln!("{line}");
    }
    let kernel = sum(
        &text,
        "sluice_response_body_bytes_total",
        &["path=\"kernel\""],
    );
    let userspace = sum(
        &text,
        "sluice_response_body_bytes_total",
        &["path=\"userspace\""],
    );
    assert!(kernel + userspace <= bodies as f64, "{text}");
    assert!(kernel + userspace >= floor, "{text}");
    (kernel, userspace, text)
}

/// The response splice (`--ebpf-splice-responses`): 64 MiB responses —
/// one on a client connection that closes, then three on one keep-alive
/// client connection, the last two pipelined (the second head must wait
/// until the kernel has written the first body) — arrive byte-identical,
/// and the kernel moved them: the proxy copied only what the backend had
/// queued before each head was parsed (at most 1/32 of the bytes; about
/// 0.5 MB of 256 MiB seen), and the sk_skb counters hold at least what
/// the kernel moved.
#[test]
fn on_splices_64mib_responses_in_the_kernel() {
    require_root!();
    let (sluice, port) = response_splice_sluice("ebpf-response-splice");
    let log = sluice.log_text();
    assert!(log.contains("response bodies active"), "{log}");
    assert_eq!(get_big(port), BIG);

    let (mut writer, mut reader) = send_gets(port, 1);
    read_big_response(&mut reader, "keep-alive 1", 1 << 16, Duration::ZERO);
    let request = b"GET / HTTP/1.1\r\nhost: big.example\r\n\r\n";
    writer.write_all(&request.repeat(2)).unwrap();
    read_big_response(&mut reader, "pipelined 1", 1 << 16, Duration::ZERO);
    read_big_response(&mut reader, "pipelined 2", 1 << 16, Duration::ZERO);

    let bodies = 4 * BIG;
    let (kernel, userspace, text) = response_body_bytes(&sluice, bodies, 4);
    assert!(userspace <= (bodies / 32) as f64, "{text}");
    assert!(
        kernel >= (bodies - bodies / 32 - 4 * (64 << 10)) as f64,
        "{text}"
    );
    let redirected = sum(
        &text,
        "sluice_ebpf_bytes_total",
        &["program=\"sk_skb\"", "verdict=\"redirected\""],
    );
    assert!(redirected >= kernel, "{text}");
    assert_eq!(
        sum(&text, "sluice_ebpf_socket_errors_total", &[]),
        0.0,
        "{text}"
    );
}

/// A client that reads a spliced 64 MiB body slowly (about 32 MB/s, less
/// than the kernel could send) still gets every byte in order, and the
/// kernel moved them (what it cannot write yet waits in the client
/// socket's queue).
#[test]
fn on_splices_a_response_to_a_slow_client() {
    require_root!();
    let (sluice, port) = response_splice_sluice("ebpf-response-slow");
    let (_writer, mut reader) = send_gets(port, 1);
    read_big_response(&mut reader, "slow", 1 << 15, Duration::from_millis(1));
    let (kernel, _, text) = response_body_bytes(&sluice, BIG, 1);
    assert!(kernel >= (BIG - BIG / 32) as f64, "{text}");
}

/// A backend that writes bytes past a spliced body, in the same write:
/// the kernel stops at the body's end (the budget), the client gets the
/// body and nothing else — its next request on the same connection is
/// answered as usual — and the stray bytes never reach it.
#[test]
fn on_response_splice_stops_at_the_body_end() {
    require_root!();
    let backend = big_backend_with_tail(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray");
    let (sluice, port) = response_splice_sluice_on("ebpf-response-tail", backend);
    let (mut writer, mut reader) = send_gets(port, 1);
    read_big_response(&mut reader, "first", 1 << 16, Duration::ZERO);
    let request = b"GET / HTTP/1.1\r\nhost: big.example\r\n\r\n";
    writer.write_all(request).unwrap();
    read_big_response(&mut reader, "second", 1 << 16, Duration::ZERO);
    let (kernel, _, text) = response_body_bytes(&sluice, 2 * BIG, 2);
    assert!(kernel > 0.0, "{text}");
}

/// Clients that leave in the middle of a spliced 64 MiB body (closing
/// with unread bytes: a reset) cost only their own exchange: the proxy
/// ends the splice and both connections, gives the body's share of the
/// kernel's bound back — five such bodies are more than the 256 MiB bound,
/// so a leak would leave the next body to userspace — and the next client
/// gets a whole body through the kernel.
#[test]
fn on_response_splice_survives_clients_that_leave_mid_body() {
    require_root!();
    let (sluice, port) = response_splice_sluice("ebpf-response-leave");
    for round in 0..5 {
        let (writer, mut reader) = send_gets(port, 1);
        assert_eq!(read_ok_head(&mut reader), Some(BIG), "round {round}");
        let mut buf = vec![0u8; 1 << 20];
        reader.read_exact(&mut buf).unwrap();
        drop(reader);
        drop(writer);
    }
    let before = sum(
        &sluice.metrics(),
        "sluice_response_body_bytes_total",
        &["path=\"kernel\""],
    );
    let (_writer, mut reader) = send_gets(port, 1);
    read_big_response(&mut reader, "after the leavers", 1 << 16, Duration::ZERO);
    let text = sluice.wait_metrics("the last body through the kernel", |m| {
        sum(m, "sluice_response_body_bytes_total", &["path=\"kernel\""]) - before
            >= (BIG - BIG / 32) as f64
    });
    assert_eq!(
        sum(&text, "sluice_ebpf_socket_errors_total", &[]),
        0.0,
        "{text}"
    );
}

/// The binary run as `nobody`, with `--ebpf <mode>`; `None` when neither
/// setpriv nor runuser exists.
fn run_unprivileged(files: &[PathBuf], mode: &str, log: &Path) -> Option<std::process::Child> {
    let exe = env!("CARGO_BIN_EXE_sluice");
    let mut args: Vec<String> = vec![exe.into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(["--bind", "127.0.0.1", "--workers", "1", "--ebpf", mode].map(String::from));
    let mut cmd = if Path::new("/usr/bin/setpriv").exists() || which("setpriv") {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c
    } else if which("runuser") {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]);
        c
    } else {
        return None;
    };
    let child = cmd
        .args(&args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Some(child)
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Without privileges, `--ebpf on` refuses to start and says why; `auto`
/// serves on the userspace path and says so in exactly one line.
#[test]
fn on_without_privileges_fails_clearly_and_auto_falls_back() {
    if !is_root() {
        eprintln!("note: not root; cannot drop privileges to test them");
        return;
    }
    let backend = big_backend();
    let (files, port) = inputs("ebpf-unpriv", backend);
    let dir = files[0].parent().unwrap().to_path_buf();
    let log = dir.join("on.log");
    let Some(mut child) = run_unprivileged(&files, "on", &log) else {
        eprintln!("note: neither setpriv nor runuser: skipping");
        return;
    };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < WAIT,
            "--ebpf on without privileges kept running"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("--ebpf on: cannot load the eBPF programs")
            && text.contains("not running as root"),
        "{text}"
    );

    let log = dir.join("auto.log");
    let mut child = run_unprivileged(&files, "auto", &log).unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        assert!(start.elapsed() < WAIT, "did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let served = get_big(port);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(served, BIG);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("eBPF")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("eBPF acceleration off (--ebpf auto could not load it")
            && lines[0].contains("not running as root")
            && lines[0].contains("userspace path"),
        "{text}"
    );
}

/// Two processes with their own programs and maps: neither disturbs the
/// other, each pins under its own pid, and a killed process's pins are
/// removed by the next start.
#[test]
fn two_processes_coexist_and_stale_pins_are_removed() {
    require_root!();
    let backend = big_backend();
    let (files_a, port_a) = inputs("ebpf-a", backend);
    let (files_b, port_b) = inputs("ebpf-b", backend);
    let a = Sluice::start(&files_a, port_a, 1, &["--ebpf", "on"]);
    let mut b = Sluice::start(&files_b, port_b, 1, &["--ebpf", "on"]);
    let (pid_a, pid_b) = (pid_of(&a), pid_of(&b));
    assert!(pin_dir(pid_a).join("SLUICE_COUNTERS").exists());
    assert!(pin_dir(pid_b).join("SLUICE_COUNTERS").exists());
    assert_eq!(get_big(port_a), BIG);
    assert_eq!(get_big(port_b), BIG);

    b.signal("KILL"); // no clean-up
    assert!(b.wait_exit(WAIT).is_some());
    assert!(pin_dir(pid_b).exists());
    assert_eq!(get_big(port_a), BIG);
    let (files_c, port_c) = inputs("ebpf-c", backend);
    let c = Sluice::start(&files_c, port_c, 1, &["--ebpf", "on"]);
    assert!(!pin_dir(pid_b).exists(), "stale pins of {pid_b} kept");
    assert!(pin_dir(pid_a).exists(), "a live process's pins removed");
    assert_eq!(get_big(port_c), BIG);
    drop(c);

    // A clean stop (SIGTERM) removes its own pins.
    a.signal("TERM");
    let mut a = a;
    assert!(
        a.wait_exit(WAIT).is_some_and(|s| s.success()),
        "{}",
        a.log_text()
    );
    assert!(!pin_dir(pid_a).exists(), "pins kept after a clean exit");
}

/// Opens a WebSocket upgrade through the proxy; `first` is sent in the
/// same write as the request head (so it is pending in the proxy's client
/// buffer when the tunnel starts). Returns the stream after the `101` head.
fn ws_open(port: u16, first: &[u8]) -> (TcpStream, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT_READ)).unwrap();
    let mut request = b"GET /ws HTTP/1.1\r\nhost: ws.example\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n".to_vec();
    request.extend_from_slice(first);
    stream.write_all(&request).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    (stream, reader)
}

/// One blocking read on a socket another thread writes to. The test's
/// client is a local client of sluice, so its socket is in the bypass's
/// SockHash, and there a blocking read may return `EAGAIN` after a wake-up
/// that brought no data (kernel 6.18's sockmap receive path; documented in
/// `proxy/src/bpf.rs`, "What a user sees"): retried until the socket's
/// 30 s read timeout has really passed.
fn read_full_duplex(reader: &mut impl Read, buf: &mut [u8]) -> usize {
    let start = Instant::now();
    loop {
        match reader.read(buf) {
            Ok(n) => return n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && start.elapsed() < WAIT_READ => {
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// The clients' read timeout.
const WAIT_READ: Duration = Duration::from_secs(30);

/// Echoes `size` bytes of [`body_byte`] through a WebSocket tunnel (the
/// first `first` of them sent with the upgrade request), half-closes, and
/// checks every byte of the echo, then the backend's "bye" after the
/// half-close and its close. Returns the bytes received.
///
/// `quiet`: the client waits for the echo of those first bytes before it
/// sends the rest (a message exchange, as WebSocket clients do), so the
/// tunnel is quiet for a moment after the `101`.
fn ws_echo(port: u16, size: usize, first: usize, quiet: bool) -> usize {
    let first = first.min(size);
    let head: Vec<u8> = (0..first).map(body_byte).collect();
    let (mut writer, mut reader) = ws_open(port, &head);
    let (echoed, wait_echo) = std::sync::mpsc::channel::<()>();
    let sender = std::thread::spawn(move || {
        if quiet {
            let _ = wait_echo.recv();
        }
        let mut at = first;
        let mut block = vec![0u8; 1 << 16];
        while at < size {
            let n = block.len().min(size - at);
            for (k, b) in block[..n].iter_mut().enumerate() {
                *b = body_byte(at + k);
            }
            writer.write_all(&block[..n]).unwrap();
            at += n;
        }
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0;
    loop {
        let n = read_full_duplex(&mut reader, &mut buf);
        if n == 0 {
            break; // the backend's close, propagated
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            // After the echo, the backend says "bye" once it read EOF.
            let want = if at + k < size {
                body_byte(at + k)
            } else {
                *b"bye"
                    .get(at + k - size)
                    .expect("more than the echo and bye")
            };
            assert_eq!(
                b,
                want,
                "byte {} differs: {:?}",
                at + k,
                String::from_utf8_lossy(&buf[k..n.min(k + 80)])
            );
        }
        at += n;
        if at >= first {
            let _ = echoed.send(());
        }
    }
    sender.join().unwrap();
    assert_eq!(
        at,
        size + 3,
        "the echo and the backend's \"bye\" after the half-close"
    );
    at
}

/// The splice proof: with `--ebpf on`, a 64 MiB WebSocket echo through
/// `proto::h1::tunnel` arrives byte-identical, the half-close is
/// propagated both ways (the client's FIN reaches the backend, which
/// answers "bye" and closes; that close reaches the client), and the
/// kernel moved the bytes: the sk_skb splice counters hold both directions
/// (64 MiB each way, plus "bye") while the proxy's userspace tunnel
/// counter holds only what was copied while entering the splice.
#[test]
fn on_splices_a_64mib_websocket_echo_in_the_kernel() {
    require_root!();
    let ws = support::WsBackend::start();
    let (files, port) = inputs("ebpf-ws", ws.port);
    let sluice = Sluice::start(&files, port, 1, &["--ebpf", "on", "--ebpf-splice", "true"]);
    let log = sluice.log_text();
    assert!(
        log.contains("splice of tunnelled connections active"),
        "{log}"
    );
    let echoed = std::panic::catch_unwind(|| ws_echo(port, BIG, 4096, false));
    assert!(
        matches!(echoed, Ok(n) if n == BIG + 3),
        "{}",
        sluice.log_text()
    );
    // Every byte once: spliced in the kernel, or copied in userspace (the
    // 4096 bytes sent with the request, what the sockets held when the
    // splice began, the "bye" that came with the backend's FIN).
    let total = (2 * BIG + 3) as f64;
    let text = sluice.wait_metrics("the echo's bytes accounted for", |m| {
        sum(m, "sluice_ebpf_bytes_total", &["program=\"sk_skb\""])
            + sum(m, "sluice_tunnel_userspace_bytes_total", &[])
            >= total
    });
    for line in text
        .lines()
        .filter(|l| l.starts_with("sluice_ebpf") || l.starts_with("sluice_tunnel"))
    {
        eprintln!("{line}");
    }
    let spliced = sum(
        &text,
        "sluice_ebpf_bytes_total",
        &["program=\"sk_skb\"", "verdict=\"redirected\""],
    );
    let userspace = sum(&text, "sluice_tunnel_userspace_bytes_total", &[]);
    assert_eq!(spliced + userspace, total, "{text}");
    // What entering copied: one short read per direction, while the client
    // streams all along — ~70–100 KiB here; the bound leaves room for a busy
    // machine. The proof is that the rest, nearly all of it, went through
    // the kernel.
    assert!(userspace < total / 32.0, "{text}");
    assert!(
        sum(
            &text,
            "sluice_ebpf_messages_total",
            &["program=\"sk_skb\"", "verdict=\"redirected\""]
        ) > 0.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "sluice_ebpf_active", &["acceleration=\"splice\""]),
        1.0
    );
}

/// `--ebpf off`: the same echo, every byte copied by the tunnel in
/// userspace (the counter holds both directions), no eBPF counters.
#[test]
fn off_copies_the_64mib_websocket_echo_in_userspace() {
    let ws = support::WsBackend::start();
    let (files, port) = inputs("ebpf-ws-off", ws.port);
    let sluice = Sluice::start(&files, port, 1, &["--ebpf", "off"]);
    assert_eq!(ws_echo(port, BIG, 4096, false), BIG + 3);
    let text = sluice.wait_metrics("the echo's bytes counted", |m| {
        sum(m, "sluice_tunnel_userspace_bytes_total", &[]) >= (2 * BIG) as f64
    });
    let userspace = sum(&text, "sluice_tunnel_userspace_bytes_total", &[]);
    assert!(userspace <= (2 * BIG + 3) as f64, "{text}");
    assert!(!text.contains("sluice_ebpf_bytes"), "{text}");
}

/// Runs `tunnels` spliced WebSocket echoes of `each` bytes at once through
/// a sluice with `workers` workers (`first` bytes sent with the upgrade
/// request; `quiet`: the rest only after those came back), checks every
/// echo byte for byte, and that every byte was counted once — by the
/// verdict or by the userspace copy — with nearly all of it in the kernel:
/// entering reads each side until one read comes back short and never
/// waits on a write (bpf.rs, "Handover protocol"), so what it copies is
/// what the sockets held.
fn concurrent_spliced_echoes(tag: &str, workers: usize, tunnels: usize, each: usize, quiet: bool) {
    let ws = support::WsBackend::start();
    let (files, port) = inputs(tag, ws.port);
    let sluice = Sluice::start(
        &files,
        port,
        workers,
        &["--ebpf", "on", "--ebpf-splice", "true"],
    );
    let clients: Vec<_> = (0..tunnels)
        .map(|i| {
            let first = if quiet { 1000 + i } else { 4096 };
            std::thread::spawn(move || ws_echo(port, each, first, quiet))
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), each + 3);
    }
    let total = (tunnels * (2 * each + 3)) as f64;
    let text = sluice.wait_metrics("the echoes' bytes accounted for", |m| {
        sum(
            m,
            "sluice_ebpf_bytes_total",
            &["program=\"sk_skb\"", "verdict=\"redirected\""],
        ) + sum(m, "sluice_tunnel_userspace_bytes_total", &[])
            >= total
    });
    let spliced = sum(
        &text,
        "sluice_ebpf_bytes_total",
        &["program=\"sk_skb\"", "verdict=\"redirected\""],
    );
    let userspace = sum(&text, "sluice_tunnel_userspace_bytes_total", &[]);
    assert_eq!(spliced + userspace, total, "{text}");
    assert!(userspace < total / 16.0, "{text}");
}

/// Twenty spliced tunnels at once, each with bytes pending with its
/// upgrade request (echoed before the client streams the rest), on two
/// workers.
#[test]
fn on_splices_twenty_concurrent_tunnels() {
    require_root!();
    concurrent_spliced_echoes("ebpf-ws-many", 2, 20, 4 << 20, true);
}

/// Four tunnels that stream at full speed from the start, both ways at
/// once, towards a backend that echoes from one thread (it stops reading
/// while its writes wait): the shape that once deadlocked entering the
/// splice (bpf.rs, "Handover protocol").
#[test]
fn on_splices_four_streaming_echoes() {
    require_root!();
    concurrent_spliced_echoes("ebpf-ws-streaming", 1, 4, 32 << 20, false);
}
