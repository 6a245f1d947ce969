//! Pieces the pages are built from.

pub mod toasts;
