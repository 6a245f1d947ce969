//! Pieces the pages are built from.

pub mod confirm;
pub mod get_model;
pub mod icons;
pub mod layout;
pub mod switch;
pub mod toasts;
pub mod user_menu;
pub mod viewer;
