//! `GET /healthz`: the process is up and answering.

pub async fn handler() -> &'static str {
    "ok"
}
