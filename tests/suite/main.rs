//! The integration suite, linked as one test binary: each module below is one area (its own
//! doc comment says what it covers). One binary instead of one per file saves a link of the
//! whole dependency tree per file — minutes of CI on a two-core machine.

mod common;
mod pg;
mod store_double;

mod alert_promises;
mod alerts;
mod api;
#[cfg(feature = "aws")]
mod aws_log_lookup;
#[cfg(feature = "aws")]
mod aws_moto;
#[cfg(feature = "aws")]
mod aws_targets;
mod browser;
mod cli;
mod contracts;
mod deploy;
mod doctor;
#[cfg(feature = "aws")]
mod events;
mod export_bundle;
mod file_exports;
mod heap_diff;
mod last_words_corpus;
mod last_words_judgement;
mod leak_quality;
mod log_backends;
mod oom_corpus;
mod openapi_conformance;
mod parsers_never_panic;
mod pipeline_faults;
mod prometheus;
mod redaction_corpus;
mod redaction_end_to_end;
mod replicas;
mod rescans;
mod signature_quality;
mod simulator_truth;
mod soak;
mod store_contract;
