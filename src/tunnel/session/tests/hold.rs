//! A broken tunnel is held for the granted time, then expires; a resume within it keeps the tunnel.
//! The hold timer is the server's (`service::hold`); the client's keeper applies the same deadline
//! while it retries.

use std::time::Duration;

use super::super::{EndReason, Role};
use super::{params, End};
use crate::tunnel::service::hold;

#[tokio::test(start_paused = true)]
async fn a_broken_tunnel_expires_once_its_hold_time_runs_out() {
    let server = End::new(Role::Server, params());
    let keeper = tokio::spawn(hold(server.s.clone()));
    tokio::task::yield_now().await;
    server.s.link_down(server.gen);
    tokio::time::sleep(params().keep_broken - Duration::from_secs(1)).await;
    assert_eq!(server.s.end_reason(), None, "still held");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.s.end_reason(), Some(EndReason::Expired));
    keeper.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_resume_within_the_hold_time_keeps_the_tunnel() {
    let server = End::new(Role::Server, params());
    let keeper = tokio::spawn(hold(server.s.clone()));
    tokio::task::yield_now().await;
    server.s.link_down(server.gen);
    tokio::time::sleep(params().keep_broken / 2).await;
    server.s.attach(0).unwrap();
    tokio::time::sleep(params().keep_broken * 2).await;
    assert_eq!(server.s.end_reason(), None, "up again: no clock runs");
    server.s.end(EndReason::Closed);
    keeper.await.unwrap();
}
