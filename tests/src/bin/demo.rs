//! The local end-to-end run (`scripts/demo`): moto, a seeded DR environment, and the real function
//! binaries driven through the Lambda Runtime API. Prints what it does and what on-call would see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tests::dr_env::DrEnv;
use tests::moto;
use tests::runtime_api::{Function, Invocation};

fn step(title: &str) {
    println!("\n=== {title}");
}

fn show(inv: &Invocation) {
    match inv {
        Invocation::Response(v) | Invocation::Error(v) => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Invocation::NoAnswer(why) => println!("(no answer: {why})"),
    }
}

#[tokio::main]
async fn main() {
    step("starting moto (local AWS) on 127.0.0.1");
    let moto = moto::shared();
    println!("endpoint: {}", moto.endpoint);

    step("seeding a DR environment: SSM parameters for two sites, control bucket, paging and chat topics");
    let env = DrEnv::seed_named(&moto.endpoint, "demo").await;
    println!("environment  {}", env.environment);
    println!("ssm prefix   {}", env.prefix);
    println!("bucket       {}", env.bucket);
    println!("paging topic {}", env.paging_topic);
    println!("chat topic   {}", env.chat_topic);

    step("starting the manual-trigger binary behind a local Lambda Runtime API");
    let mut manual = Function::start("manual-trigger", &env.function_env());
    println!("AWS_LAMBDA_RUNTIME_API={}", manual.runtime_api);

    step("invoke manual-trigger {\"command\":\"status\"}");
    let status = manual.invoke(&json!({"command": "status"}));
    show(&status);

    step("invoke manual-trigger with a typo: {\"command\":\"stauts\"}");
    show(&manual.invoke(&json!({"command": "stauts"})));

    let ok = matches!(&status, Invocation::Response(v) if v["active_site"] == "primary");
    step(if ok { "demo finished: status answered from SSM, the typo was rejected" } else { "demo FAILED" });
    if !ok {
        eprintln!("function logs:\n{}", manual.logs());
        std::process::exit(1);
    }
}
