//! Watch streams: newline-delimited JSON events over a chunked response, resuming from a
//! resourceVersion, initial events, BOOKMARKs, timeouts, and 410 ERROR events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, header};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::error::ApiError;
use crate::registry::ResourceDef;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{Ctx, Render, render_obj};
use crate::store::{Event, EventType, Obj, event_line};
use crate::table;

/// Default server-side watch duration when the client sends no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_mins(30);

struct Filter {
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, o: &Obj) -> bool {
        self.ns.as_deref().is_none_or(|n| o.namespace() == n)
            && (self.labels.is_empty() || self.labels.matches(o.labels()))
            && (self.fields.is_empty() || self.fields.matches(&o.value))
    }
}

struct Pump {
    def: Arc<ResourceDef>,
    mode: Render,
    filter: Filter,
    bookmarks: bool,
    last_rv: u64,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
}

impl Pump {
    fn line(&self, kind: EventType, obj: &Obj, shared: Option<&Event>) -> Bytes {
        let same_version =
            obj.value["apiVersion"].as_str() == Some(self.def.api_version().as_str());
        if let Some(ev) = shared
            && self.mode == Render::Full
            && ev.kind == kind
            && same_version
        {
            return ev.line();
        }
        let body = match self.mode {
            Render::Table => Bytes::from(
                serde_json::to_vec(&table::table(&self.def, &[obj], None, "Object"))
                    .unwrap_or_default(),
            ),
            m => render_obj(obj, &self.def, m),
        };
        event_line(kind.as_str(), &body)
    }

    fn bookmark(&self, initial_end: bool) -> Bytes {
        let (kind, api_version) = match self.mode {
            Render::Full => (self.def.kind.clone(), self.def.api_version()),
            _ => (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            ),
        };
        let mut meta = json!({"resourceVersion": self.last_rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
        event_line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
    }

    async fn send(&self, b: Bytes) -> bool {
        self.tx.send(Ok(b)).await.is_ok()
    }

    /// Translates one store event for this watcher; returns false when the client is gone.
    async fn event(&mut self, ev: &Event) -> bool {
        if ev.rv <= self.last_rv {
            return true;
        }
        self.last_rv = ev.rv;
        let now = self.filter.matches(&ev.obj);
        let before = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let kind = match ev.kind {
            EventType::Modified if now && before => EventType::Modified,
            EventType::Added | EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            EventType::Deleted if now || before => EventType::Deleted,
            _ => return true,
        };
        let line = self.line(kind, &ev.obj, Some(ev));
        self.send(line).await
    }
}

/// Where a watch starts.
enum Begin {
    /// A snapshot (sent as ADDED), then live events; the flag asks for the end bookmark.
    Initial(Vec<Arc<Obj>>, broadcast::Receiver<Arc<Event>>, bool),
    /// History after the requested resourceVersion, then live events.
    Resume(Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>),
    /// The requested resourceVersion and the oldest one retained.
    Expired(u64, u64),
}

/// Starts a watch for the request in `ctx`.
#[allow(clippy::too_many_lines)]
pub fn start(ctx: &Ctx<'_>, mode: Render) -> Result<Response, ApiError> {
    let q = ctx.q;
    let filter = Filter {
        ns: if ctx.ns.is_empty() {
            None
        } else {
            Some(ctx.ns.to_string())
        },
        labels: LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?,
        fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())?,
    };
    let timeout =
        match q.get("timeoutSeconds") {
            None | Some("") => DEFAULT_TIMEOUT,
            Some(s) => Duration::from_secs(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("timeoutSeconds: invalid value {s:?}"))
            })?),
        };
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    let rv_param = q.get("resourceVersion").unwrap_or_default();
    let from: Option<u64> =
        match rv_param {
            "" | "0" => None,
            s => Some(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion: invalid value {s:?}"))
            })?),
        };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let def = Arc::new(ctx.def.clone());
    let store = ctx.store.clone();
    let mut cut = ctx.st.cut.subscribe();
    let bookmark_every = ctx.st.opts.bookmark_interval;
    let mut pump = Pump {
        def,
        mode,
        filter,
        bookmarks,
        last_rv: 0,
        tx,
    };
    // Decide the starting point synchronously so the stream begins at the request's moment.
    let begin = match from {
        Some(rv) if !send_initial => match store.subscribe_from(rv) {
            Ok(sub) => {
                pump.last_rv = rv;
                Begin::Resume(sub.backlog, sub.rx)
            }
            Err(oldest) => Begin::Expired(rv, oldest),
        },
        _ => {
            let ns = pump.filter.ns.clone();
            let (items, rv, rx) = store.snapshot_subscribe(ns.as_deref());
            pump.last_rv = rv;
            Begin::Initial(items, rx, send_initial)
        }
    };
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut rx = match begin {
            Begin::Expired(rv, oldest) => {
                let status = ApiError::gone(rv, oldest).to_status();
                let _ = pump
                    .send(event_line(
                        "ERROR",
                        &serde_json::to_vec(&status).unwrap_or_default(),
                    ))
                    .await;
                return;
            }
            Begin::Initial(items, rx, end_marker) => {
                for o in items.iter().filter(|o| pump.filter.matches(o)) {
                    let line = pump.line(EventType::Added, o, None);
                    if !pump.send(line).await {
                        return;
                    }
                }
                if end_marker {
                    let b = pump.bookmark(true);
                    if !pump.send(b).await {
                        return;
                    }
                }
                rx
            }
            Begin::Resume(backlog, rx) => {
                for ev in &backlog {
                    if !pump.event(ev).await {
                        return;
                    }
                }
                rx
            }
        };
        let mut tick = tokio::time::interval(bookmark_every);
        tick.tick().await;
        loop {
            tokio::select! {
                () = pump.tx.closed() => return,
                () = &mut deadline => {
                    if pump.bookmarks {
                        let b = pump.bookmark(false);
                        let _ = pump.send(b).await;
                    }
                    return;
                }
                _ = cut.changed() => return,
                _ = tick.tick() => {
                    if pump.bookmarks {
                        let b = pump.bookmark(false);
                        if !pump.send(b).await {
                            return;
                        }
                    }
                }
                r = rx.recv() => match r {
                    Ok(ev) => {
                        if !pump.event(&ev).await {
                            return;
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    });
    let stream = tokio_util_stream(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

fn tokio_util_stream(
    rx: mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}
