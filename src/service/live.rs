//! Live sessions' use cases that need no session actor: creating one, ending one, and a
//! user's departure after the grace period. Commands on an existing session run in its actor
//! on the caller's node (`runtime::live`), in the order each connection sent them.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{Caller, Services};
use crate::bus::{BusEvent, Topic};
use crate::domain::{ConnectionId, Error, LiveEndReason, LiveSession, LiveTitle, SessionId, UserId};
use crate::wire::{LiveCommand, Push, Reply};

/// Starts a live command and returns its reply. Session commands are handed to the hub
/// before this returns, so one connection's commands reach the session in the order sent.
pub fn execute(
    services: Arc<Services>,
    caller: Caller,
    command: LiveCommand,
) -> BoxFuture<'static, Result<Reply, Error>> {
    match (command.session(), command) {
        (Some(session), command) => services.actors.live(caller, session, command),
        (None, LiveCommand::Create { title }) => Box::pin(async move { create(&services, &caller, &title).await }),
        (None, _) => Box::pin(async { Err(Error::Internal) }),
    }
}

async fn create(services: &Services, caller: &Caller, title: &str) -> Result<Reply, Error> {
    let title = LiveTitle::parse(title)?;
    services.limits.live_creates.check(&caller.user)?;
    let most = services.settings.user_limits.live_sessions_per_host;
    let Some(session) = services.store.create_live_session(&caller.user, &title, most).await? else {
        return Err(Error::Conflict(format!("you already host {most} live sessions; end one with live.end first")));
    };
    // Every node holding the host's connections starts listening (this one included).
    services.bus.publish(Topic::User(caller.user.clone()), BusEvent::JoinedLive { session_id: session.id });
    Ok(Reply::LiveSession { session })
}

/// Ends a live session (once, whoever races to end it on any node) and tells everyone in it.
/// `None` for an unknown session.
pub async fn end_session(
    services: &Services,
    session: SessionId,
    reason: LiveEndReason,
    skip: Option<ConnectionId>,
) -> Result<Option<LiveSession>, Error> {
    let Some((ended, changed)) = services.store.end_live(session, reason).await? else { return Ok(None) };
    if changed {
        let push = Push::LiveEnded { session: ended.clone(), reason };
        services.bus.publish(Topic::Live(session), BusEvent::Push { push, skip });
    }
    Ok(Some(ended))
}

/// After the grace period: a user who is still offline everywhere leaves the sessions they
/// watch, and the sessions they host end with `host_left`.
pub async fn depart(services: &Services, user: &UserId) -> Result<(), Error> {
    if services.presence.online_among(vec![user.clone()]).await?.contains(user) {
        return Ok(());
    }
    leave_all(services, user).await
}

/// `user` leaves every live session they watch (their hosts hear the count change), and the
/// sessions they host end with `host_left`.
pub async fn leave_all(services: &Services, user: &UserId) -> Result<(), Error> {
    for (session, hosting) in services.store.live_sessions_of(user).await? {
        if hosting {
            if end_session(services, session, LiveEndReason::HostLeft, None).await?.is_some() {
                tracing::info!(%user, %session, "live session ended: the host left");
            }
        } else {
            stop_watching(services, session, user).await?;
        }
    }
    Ok(())
}

/// A block between `a` and `b` parts them live: each stops watching the sessions the other
/// hosts (a raised hand dropped with it), so neither reaches the other there; joining again
/// is refused while the block stands.
pub async fn part(services: &Services, a: &UserId, b: &UserId) -> Result<(), Error> {
    for (host, viewer) in [(a, b), (b, a)] {
        for (session, hosting) in services.store.live_sessions_of(host).await? {
            if hosting {
                stop_watching(services, session, viewer).await?;
            }
        }
    }
    Ok(())
}

/// `user` is no longer counted as a viewer of `session`: the host hears the count change, and
/// every node holding `user` stops passing the session on to them.
async fn stop_watching(services: &Services, session: SessionId, user: &UserId) -> Result<(), Error> {
    if let Some((left, true)) = services.store.leave_live(session, user).await? {
        services.bus.publish(Topic::User(left.host_id), BusEvent::LiveViewersChanged { session_id: session });
        services.bus.publish(Topic::User(user.clone()), BusEvent::LeftLive { session_id: session });
    }
    Ok(())
}

/// Ends the sessions whose host has been offline everywhere for longer than the grace
/// period. The departure check after a disconnect covers the usual case; this sweep covers
/// what it cannot see: a node stopped or restarted before its check ran, or a host whose
/// node went away while nobody noticed. `last_seen` is stored when a user goes offline.
pub async fn sweep_departed_hosts(services: &Services) -> Result<(), Error> {
    let sessions = services.store.live_hosts().await?;
    if sessions.is_empty() {
        return Ok(());
    }
    let hosts: HashSet<UserId> = sessions.iter().map(|(_, host)| host.clone()).collect();
    let online = services.presence.online_among(hosts.iter().cloned().collect()).await?;
    let offline: Vec<UserId> = hosts.into_iter().filter(|host| !online.contains(host)).collect();
    let seen = services.store.last_seen(&offline).await?;
    let grace = i64::try_from(services.settings.live_host_grace().as_millis()).unwrap_or(i64::MAX);
    let cutoff = crate::domain::Timestamp::now().millis().saturating_sub(grace);
    for (session, host) in sessions {
        let gone = !online.contains(&host) && seen.get(&host).is_none_or(|at| at.millis() <= cutoff);
        if gone && end_session(services, session, LiveEndReason::HostLeft, None).await?.is_some() {
            tracing::info!(%host, %session, "live session ended by the sweep: the host is gone");
        }
    }
    Ok(())
}
