"""The GPU device check of the torch registration backend (issue 19): cases prepared on the CPU,
registered on the device by run.sh, and scored back on the CPU. See docs/registration.md."""
