pub use hotmod_core;
