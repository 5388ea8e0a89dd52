//! A plain h2c-only backend (the `h2` crate's server, no HTTP/1.1): it
//! reads a request's whole body, then echoes it back in 64 KiB DATA frames
//! within the proxy's window, with `x-backend`, `x-method`, `x-path` and
//! `x-body-len` fields, and trailers `x-trailer: done` (or, when the
//! request has `x-test-length: 1`, a `content-length` and no trailers).

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// A request as the h2c backend received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A running h2c echo backend on 127.0.0.1 (its runtime thread lives as
/// long as the test process).
#[derive(Debug, Clone)]
pub struct Echo {
    pub name: String,
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Echo {
    /// Starts a backend named `name` on a free port.
    pub fn start(name: &str) -> Echo {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let echo = Echo {
            name: name.to_string(),
            port: listener.local_addr().unwrap().port(),
            received: Arc::default(),
        };
        let server = echo.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let server = server.clone();
                    tokio::spawn(async move {
                        let Ok(mut conn) = h2::server::handshake(tcp).await else {
                            return;
                        };
                        while let Some(Ok((request, respond))) = conn.accept().await {
                            let server = server.clone();
                            tokio::spawn(async move {
                                let _ = server.answer(request, respond).await;
                            });
                        }
                    });
                }
            });
        });
        echo
    }

    /// Requests fully received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn answer(
        &self,
        request: http::Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
    ) -> Result<(), h2::Error> {
        let (parts, mut recv) = request.into_parts();
        let mut body = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let with_length = parts.headers.contains_key("x-test-length");
        self.received.lock().unwrap().push(Received {
            method: parts.method.to_string(),
            path: parts.uri.path_and_query().unwrap().to_string(),
            authority: parts
                .uri
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            headers,
            body: body.clone(),
        });
        let mut response = http::Response::builder()
            .status(200)
            .header("x-backend", &self.name)
            .header("x-method", parts.method.as_str())
            .header("x-path", parts.uri.path())
            .header("x-body-len", body.len().to_string());
        if with_length {
            response = response.header("content-length", body.len().to_string());
        }
        let response = response.body(()).unwrap();
        let end = body.is_empty() && with_length;
        let mut send = respond.send_response(response, end)?;
        if end {
            return Ok(());
        }
        let mut body = Bytes::from(body);
        while !body.is_empty() {
            let want = body.len().min(64 * 1024);
            send.reserve_capacity(want);
            let n = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(n)) => n.min(want),
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            };
            if n == 0 {
                continue;
            }
            let last = with_length && n == body.len();
            send.send_data(body.split_to(n), last)?;
        }
        if !with_length {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-trailer", http::HeaderValue::from_static("done"));
            send.send_trailers(trailers)?;
        }
        Ok(())
    }
}
