//! Runnable tidings programs. Placeholder: the examples arrive with issue 4.
