//! `portcullis probe URL`: an HTTP health check for images that have no curl (the Dockerfile's
//! `HEALTHCHECK` on `/ready`). Exit 0 on a 2xx answer within the time limit, 1 otherwise, with one
//! line saying what it got.

use std::process::ExitCode;
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(url: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let client = match reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                eprintln!("probe: {e}");
                return ExitCode::FAILURE;
            }
        };
        match client.get(url).send().await {
            Ok(response) if response.status().is_success() => {
                println!("{url}: {}", response.status());
                ExitCode::SUCCESS
            }
            Ok(response) => {
                eprintln!("{url}: {}", response.status());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("{url}: no answer ({e})");
                ExitCode::FAILURE
            }
        }
    })
}
