//! Policies as tower layers (issue-driven: limits now; auth, rate limits and
//! metrics join here).

pub mod cors;
pub mod limits;
