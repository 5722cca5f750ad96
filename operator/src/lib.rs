//! Bloodraven operator library.
