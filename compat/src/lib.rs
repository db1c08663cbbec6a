//! Empty: this crate holds only tests (tests/).
