//! A tonic `TaskService` server that names itself in every answer, and
//! clients for it through the proxy.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::task::task_service_client::TaskServiceClient;
use super::task::task_service_server::{TaskService, TaskServiceServer};
use super::task::{CreateTaskRequest, GetTaskRequest, ListTasksRequest, Task, UploadSummary};

/// A running tonic server on 127.0.0.1 (its runtime thread lives as long as
/// the test process).
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub port: u16,
    calls: Arc<AtomicUsize>,
}

#[derive(Debug, Clone)]
struct Service {
    name: String,
    calls: Arc<AtomicUsize>,
}

type TaskStream = Pin<Box<dyn Stream<Item = Result<Task, Status>> + Send>>;

#[tonic::async_trait]
impl TaskService for Service {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<Task>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut response = Response::new(Task {
            id: "1".into(),
            title: request.into_inner().title,
            payload: Vec::new(),
            server: self.name.clone(),
        });
        response
            .metadata_mut()
            .insert("x-server", self.name.parse().unwrap());
        Ok(response)
    }

    async fn get_task(&self, request: Request<GetTaskRequest>) -> Result<Response<Task>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let seen_tenant = request
            .metadata()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let req = request.into_inner();
        if req.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(req.delay_ms))).await;
        }
        if req.fail_with != 0 {
            let mut status = Status::new(tonic::Code::from(req.fail_with), "requested failure");
            status
                .metadata_mut()
                .insert("x-trailer-server", self.name.parse().unwrap());
            return Err(status);
        }
        Ok(Response::new(Task {
            id: req.id,
            title: seen_tenant,
            payload: Vec::new(),
            server: self.name.clone(),
        }))
    }

    type ListTasksStream = TaskStream;

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<Self::ListTasksStream>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let req = request.into_inner();
        let name = self.name.clone();
        let payload = vec![b'x'; req.payload_size as usize];
        let stream = tokio_stream::iter(0..req.count).map(move |i| {
            Ok(Task {
                id: i.to_string(),
                title: String::new(),
                payload: payload.clone(),
                server: name.clone(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn upload_tasks(
        &self,
        request: Request<Streaming<Task>>,
    ) -> Result<Response<UploadSummary>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut stream = request.into_inner();
        let mut summary = UploadSummary {
            count: 0,
            bytes: 0,
            server: self.name.clone(),
        };
        while let Some(task) = stream.next().await {
            let task = task?;
            summary.count += 1;
            summary.bytes += task.payload.len() as u64;
        }
        Ok(Response::new(summary))
    }

    type ChatStream = TaskStream;

    async fn chat(
        &self,
        request: Request<Streaming<Task>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let name = self.name.clone();
        let stream = request.into_inner().map(move |task| {
            task.map(|mut t| {
                t.server = name.clone();
                t
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

impl Server {
    /// Starts a server named `name` on a free port.
    pub fn start(name: &str) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(AtomicUsize::new(0));
        let service = Service {
            name: name.to_string(),
            calls: calls.clone(),
        };
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                tonic::transport::Server::builder()
                    .add_service(TaskServiceServer::new(service))
                    .serve_with_incoming(incoming)
                    .await
                    .unwrap();
            });
        });
        Server {
            name: name.to_string(),
            port,
            calls,
        }
    }

    /// Calls served so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A multi-threaded runtime for test clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A lazily connecting channel to the proxy on `port`, with `:authority`
/// `authority`.
pub fn channel(port: u16, authority: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .origin(format!("http://{authority}").parse().unwrap())
        .connect_lazy()
}

/// A `TaskService` client through the proxy on `port`.
pub fn client(port: u16) -> TaskServiceClient<tonic::transport::Channel> {
    TaskServiceClient::new(channel(port, "grpc.test"))
}

/// Calls a unary method by its full path (`/pkg.Service/Method`) with a
/// `GetTaskRequest`, whatever the service: for paths no client has.
pub async fn call_path(
    channel: tonic::transport::Channel,
    path: &'static str,
    request: Request<GetTaskRequest>,
) -> Result<Response<Task>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let codec: tonic_prost::ProstCodec<GetTaskRequest, Task> = tonic_prost::ProstCodec::default();
    grpc.unary(request, http::uri::PathAndQuery::from_static(path), codec)
        .await
}
