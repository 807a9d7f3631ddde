//! How a command's error ends the process: logged with its causes, exit status 1.

use std::process::ExitCode;

/// Success, or the error logged with its causes and a failure status.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `outer: inner: …`. framescale's errors say their cause in their own
/// message and also link it as their source (for callers that branch on it), so a cause whose
/// text is already there is not repeated.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}
