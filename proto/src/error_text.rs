//! Errors of the gRPC stack in words, the same on both sides: a status as
//! its code and message followed by its causes, a transport error as its
//! innermost cause ("Connection refused" rather than "transport error").

/// `Unavailable: error trying to connect: tcp connect error: Connection refused`.
#[must_use]
pub fn status_with_causes(status: &tonic::Status) -> String {
    // A connection failure arrives as UNAVAILABLE whose source chain holds
    // the OS error.
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut cause = std::error::Error::source(status);
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// The last error of `error`'s source chain, in words.
#[must_use]
pub fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_status_lists_code_message_and_causes() {
        let status = tonic::Status::unavailable("no leader");
        assert_eq!(status_with_causes(&status), "Unavailable: no leader");
    }

    #[test]
    fn the_innermost_cause_wins() {
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert_eq!(innermost_cause(&error), "Connection refused");
    }
}
