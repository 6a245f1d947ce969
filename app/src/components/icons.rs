//! Inline SVG icons (no icon font, no emoji: both depend on what the system has installed).
//! Each is decorative (`aria-hidden`); the button around it carries the accessible name.

use leptos::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    Gear,
    Trash,
    Pencil,
    Download,
    Expand,
    Reuse,
    Plus,
    Close,
    Left,
    Right,
    Info,
    Search,
    Chat,
    Agent,
    Palette,
    Broom,
    Dice,
    Code,
    Send,
}

impl Icon {
    fn path(self) -> &'static str {
        match self {
            Icon::Gear => "M12 15.5a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7Zm7.4-2.5a7.8 7.8 0 0 0 0-2l2.1-1.6-2-3.5-2.5 1a7.6 7.6 0 0 0-1.7-1L15 3h-4l-.4 2.9a7.6 7.6 0 0 0-1.7 1l-2.5-1-2 3.5L6.6 11a7.8 7.8 0 0 0 0 2l-2.1 1.6 2 3.5 2.5-1a7.6 7.6 0 0 0 1.7 1L11 21h4l.4-2.9a7.6 7.6 0 0 0 1.7-1l2.5 1 2-3.5Z",
            Icon::Trash => "M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
            Icon::Pencil => "M4 20h4L19 9l-4-4L4 16v4ZM14 6l4 4",
            Icon::Download => "M12 4v11m0 0-4-4m4 4 4-4M5 20h14",
            Icon::Expand => "M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5",
            Icon::Reuse => "M4 12a8 8 0 0 1 14-5.3M20 4v5h-5M20 12a8 8 0 0 1-14 5.3M4 20v-5h5",
            Icon::Plus => "M12 5v14M5 12h14",
            Icon::Close => "M6 6l12 12M18 6 6 18",
            Icon::Left => "M15 5l-7 7 7 7",
            Icon::Right => "M9 5l7 7-7 7",
            Icon::Info => "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18ZM12 11v6M12 7.5v.5",
            Icon::Search => "M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14ZM20 20l-4-4",
            Icon::Chat => "M4 5h16v11H9l-5 4V5Z",
            Icon::Agent => "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8ZM4 21a8 8 0 0 1 16 0",
            Icon::Palette => "M12 3a9 9 0 1 0 0 18c1.1 0 1.5-.8 1.5-1.5 0-1.2-1-1.5-1-2.5s.8-1.5 1.8-1.5H17a4 4 0 0 0 4-4c0-4.7-4-8.5-9-8.5ZM7.5 12h.01M9.5 7.5h.01M14.5 7.5h.01",
            Icon::Broom => "M14 4l6 6M4 20l7-7M9 11l4 4-3 5H4v-6l5-3Z",
            Icon::Dice => "M5 4h14a1 1 0 0 1 1 1v14a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1ZM8.5 8.5h.01M15.5 15.5h.01M12 12h.01M15.5 8.5h.01M8.5 15.5h.01",
            Icon::Code => "M8 7l-5 5 5 5M16 7l5 5-5 5",
            Icon::Send => "M4 12l16-8-6 16-3-7-7-1Z",
        }
    }
}

#[component]
pub fn Svg(icon: Icon) -> impl IntoView {
    view! {
        <svg
            class="icon"
            viewBox="0 0 24 24"
            width="18"
            height="18"
            fill="none"
            stroke="currentColor"
            stroke-width="1.8"
            stroke-linecap="round"
            stroke-linejoin="round"
            aria-hidden="true"
            focusable="false"
        >
            <path d=icon.path()></path>
        </svg>
    }
}
