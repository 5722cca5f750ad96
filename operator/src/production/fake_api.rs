//! A recording stand-in for the API server, for unit tests of the write paths: a
//! `kube::Client` over a tower `service_fn` that records every request and answers
//! with a scripted responder (by default: echo the body back as stored).

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request the client sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

type Responder = Box<dyn FnMut(&Recorded) -> (u16, Value) + Send>;

#[derive(Clone)]
pub(crate) struct FakeApi {
    requests: Arc<Mutex<Vec<Recorded>>>,
    responder: Arc<Mutex<Responder>>,
}

impl FakeApi {
    /// Answers writes by echoing the body with a resourceVersion, reads with 404.
    pub(crate) fn echo() -> Self {
        Self::with(|req| match req.method.as_str() {
            "GET" => (404, not_found()),
            _ => {
                let mut body = req.body.clone();
                body["metadata"]["resourceVersion"] = json!("2");
                (200, body)
            }
        })
    }

    pub(crate) fn with(responder: impl FnMut(&Recorded) -> (u16, Value) + Send + 'static) -> Self {
        Self {
            requests: Arc::default(),
            responder: Arc::new(Mutex::new(Box::new(responder))),
        }
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub(crate) fn client(&self) -> Client {
        let requests = self.requests.clone();
        let responder = self.responder.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let requests = requests.clone();
            let responder = responder.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await?.to_bytes();
                let recorded = Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (status, reply) = (responder.lock().unwrap())(&recorded);
                requests.lock().unwrap().push(recorded);
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap();
                Ok::<_, tower::BoxError>(response)
            }
        });
        Client::new(service, "default")
    }
}

pub(crate) fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
           "message": "not found", "code": 404})
}

pub(crate) fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
           "message": "the object has been modified; please apply your changes to the latest version and try again",
           "code": 409})
}
