//! All of epitaph's judgement: pure, synchronous, no I/O, tested on data.
//!
//! - [`cause`]: what AWS's activity text says about why an instance was terminated;
//! - [`signatures`]: which log lines are OOM or crash signatures;
//! - [`leak`]: whether a memory series' floor rises until the end;
//! - [`correlate`]: instance verdicts, deployment identity and deployment findings;
//! - [`early_warning`]: which running instances to project, and their time to the limit;
//! - [`coverage`]: whether the sources gave evidence at all (a collapsed source is a finding);
//! - [`alerting`]: when a deployment finding becomes a message (fire, change, resolve);
//! - [`doctor`]: `epitaph doctor`'s checklist from what the probes saw (fixes, nearest names);
//! - [`baselines`]: reference leak rules the detector is measured against (not used for verdicts).

pub mod alerting;
pub mod baselines;
pub mod cause;
pub mod correlate;
pub mod coverage;
pub mod doctor;
pub mod early_warning;
pub mod heap;
pub mod leak;
pub mod signatures;
