//! The yardstick of the startup benchmark: a bare `lambda_runtime` hello-world, built with the workspace's
//! release profile like the functions, answering `{"hello": "world"}`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_event: LambdaEvent<Value>| async { Ok::<_, Error>(json!({"hello": "world"})) })).await
}
