//! Redraws the PNG charts of the side-by-side bench from its JSON results, e.g.
//! `kube-reloader-bench-plot docs/bench/results.json docs/bench`.

use std::process::ExitCode;

const USAGE: &str = "usage: kube-reloader-bench-plot [RESULTS.json] [OUT_DIR] \
                     (defaults: docs/bench/results.json docs/bench)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() > 2 || args.iter().any(|a| a.starts_with('-')) {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let input = args
        .first()
        .map_or("docs/bench/results.json", String::as_str);
    let out = args.get(1).map_or("docs/bench", String::as_str);
    let results = match std::fs::read_to_string(input)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(results) => results,
        Err(e) => {
            eprintln!("cannot read {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match kube_reloader_testenv::plot::draw(&results, std::path::Path::new(out)) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
