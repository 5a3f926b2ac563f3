//! Plugins whose descriptors cannot be trusted: a 1 MiB module name, a name
//! with a newline and quotes, a name with no NUL before a page its own
//! constructor made unreadable, a misaligned descriptor pointer. Each is
//! refused with INVALID_DESCRIPTOR, and the runtime survives to load a good
//! plugin afterwards.

mod common;

use common::plugin;
use hotmod_core::{LoadOptions, Runtime, Status};

#[test]
fn untrustworthy_descriptors_are_refused_without_reading_past_them() {
    let rt = Runtime::new();
    for (name, needle) in [
        ("huge-name", "at most 128 bytes"),
        ("quote-name", "found '\\n' at byte 3"),
        ("unterminated", "unreadable memory"),
        ("misaligned", "aligned to 8 bytes"),
    ] {
        let e = rt.load(plugin(name), &LoadOptions::default()).unwrap_err();
        assert_eq!(e.status(), Status::InvalidDescriptor, "{name}: {e}");
        assert!(e.message().contains(needle), "{name}: {e} should contain {needle}");
        assert!(e.message().contains(&format!("lib{name}.so")), "{name}: {e}");
        assert!(!e.message().contains('\n'), "the message is printable: {e:?}");
    }
    assert!(rt.modules().is_empty());
    rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
}
