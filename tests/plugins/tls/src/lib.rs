//! Test fixture plugin `tls`: each calling thread gets a thread-local value
//! with a destructor, registered inside the plugin's code. The destructor
//! runs when the thread exits — possibly long after this version was
//! replaced — so the plugin must stay mapped (it declares itself not safe to
//! unload, and the runtime reports that it kept it mapped).

use std::cell::RefCell;

use hotmod_sdk::{plugin, Host, Output, Plugin, PluginError};

struct Scratch(Vec<u8>);

impl Drop for Scratch {
    fn drop(&mut self) {
        // Touch the memory so a destructor running in unmapped code would crash.
        std::hint::black_box(self.0.iter().map(|b| *b as u64).sum::<u64>());
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch(vec![0; 64]));
}

/// The instance (stateless).
pub struct Tls;

impl Plugin for Tls {
    fn init(_host: Host, _config: &[u8]) -> Result<Self, String> {
        Ok(Tls)
    }
}

fn touch(_: &Tls, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    let n = SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.0.extend_from_slice(input);
        s.0.len() as u64
    });
    out.write(&n.to_le_bytes())
}

plugin! {
    name: "tls",
    version: "1.0.0",
    description: "Thread-local destructor test fixture",
    safe_to_unload: false,
    plugin: Tls,
    methods: [ "touch" ("bytes -> u64le") => touch ],
}
