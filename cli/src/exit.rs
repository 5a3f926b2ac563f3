//! Exit codes of the `hotmod` command, derived from hotmod's status codes.
//!
//! A process exit code has 8 bits and hotmod's statuses are four-digit
//! numbers, so each group of statuses gets a range: 1xxx (load and
//! validation) → 10 + xxx, 2xxx (calls) → 40 + xxx, 3xxx (misuse) → 60 + xxx,
//! 9xxx (runtime) → 70 + xxx. Exit 0 is success and 2 a command line that
//! could not be parsed. `hotmod exit-codes` prints the table.

use hotmod_core::Status;

/// The exit code for `status`.
pub fn for_status(status: Status) -> u8 {
    let code = status.code();
    let base = match code / 1000 {
        0 => return 0,
        1 => 10,
        2 => 40,
        3 => 60,
        _ => 70,
    };
    // Every group has fewer than 30 members (checked by a test below), so
    // the ranges never overlap and the sum fits in a byte.
    (base + code % 1000) as u8
}

/// Every status with its exit code, in numeric order.
pub fn table() -> Vec<(Status, u8)> {
    Status::all().iter().map(|&s| (s, for_status(s))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_avoid_the_reserved_ones() {
        let mut seen = std::collections::HashSet::new();
        for (s, e) in table() {
            if s == Status::Ok {
                assert_eq!(e, 0);
                continue;
            }
            assert!(e > 2 && e < 126, "{s:?} -> {e} collides with shell-reserved codes");
            assert!(seen.insert(e), "{s:?} -> {e} is used twice");
        }
        assert_eq!(for_status(Status::FileMissing), 11);
        assert_eq!(for_status(Status::PluginError), 43);
    }
}
