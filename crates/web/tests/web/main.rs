//! The dashboard's tests over real HTTP, in one executable (each test file of its own would be
//! one more link of the whole dependency tree in a cold test build).
//!
//! - `pages`: the pages without a browser (sign-in, CSRF, Host and Origin, headers, share
//!   pages, the community's pages).
//! - `security`: one member cannot read or act as another, on any route of the API.

mod pages;
mod security;
mod support;
