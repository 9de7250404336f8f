//! The gateway: runs the phases for every request that is not for Portcullis itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use http::{Request, Response};
use portcullis_auth::assertion::Assertions;
use portcullis_auth::audit::Audit;
use portcullis_auth::principal::Authenticator;

use crate::access::{AccessEntry, AccessLog};
use crate::context::RequestContext;
use crate::metrics::Metrics;
use crate::phases::{self, Stop};
use crate::routes::RouteTable;
use portcullis_http::forwarded::TrustedProxies;
use portcullis_http::respond;

pub struct Gateway {
    pub routes: Arc<RouteTable>,
    /// Who a request is from: the one authenticator every surface uses.
    pub auth: Arc<Authenticator>,
    pub trusted: TrustedProxies,
    pub metrics: Arc<Metrics>,
    /// Signs identity assertions; `None` when they are turned off.
    pub assertions: Option<Arc<Assertions>>,
    pub access_log: Arc<dyn AccessLog>,
    /// Where tool calls to MCP apps are recorded.
    pub audit: Audit,
}

impl Gateway {
    pub async fn handle(&self, mut req: Request<Body>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let mut ctx = match RequestContext::new(&req, peer, &self.trusted) {
            Ok(ctx) => ctx,
            Err(failure) => return respond::failure(&failure, false),
        };
        let outcome = self.run(&mut ctx, &mut req).await;
        let mut response = match outcome {
            Ok(()) => phases::forward(&ctx, req).await,
            Err(stop) => Err(stop),
        }
        .unwrap_or_else(|stop| match stop {
            Stop::SignIn => respond::sign_in_required(&ctx.method, &ctx.return_to(), ctx.browser),
            Stop::StepUp => respond::step_up_required(&ctx.method, &ctx.return_to(), ctx.browser),
            Stop::Challenge(error) => phases::challenge(&ctx, error),
            Stop::Preflight => phases::preflight(),
            Stop::ToolRefused { id, why } => crate::tool_calls::refusal(&id, &why),
            Stop::Fail(failure) => respond::failure(&failure, ctx.browser),
        });
        phases::cors(&ctx, &mut response);
        self.log(&ctx, response, started)
    }

    /// Whether a configured app serves this request, with the host resolved exactly as routing
    /// resolves it (trusted `X-Forwarded-Host` included). Decides the paths Portcullis shares
    /// with apps (`/api/v1`, …).
    pub fn app_claims<B>(&self, req: &Request<B>, peer: SocketAddr) -> bool {
        RequestContext::new(req, peer, &self.trusted)
            .is_ok_and(|ctx| self.routes.claims(&ctx.host, &ctx.path))
    }

    /// Whether a configured web app (not an MCP app) serves this request: decides the OAuth
    /// endpoints older MCP clients look for at the origin.
    pub fn web_app_claims<B>(&self, req: &Request<B>, peer: SocketAddr) -> bool {
        RequestContext::new(req, peer, &self.trusted).is_ok_and(|ctx| {
            self.routes
                .route(&ctx.host, &ctx.path)
                .is_some_and(|app| !app.implicit && app.mcp.is_none())
        })
    }

    /// Every phase before `forward`.
    async fn run(&self, ctx: &mut RequestContext, req: &mut Request<Body>) -> Result<(), Stop> {
        phases::route(&self.routes, ctx)?;
        phases::admit_upgrade(ctx, phases::UpgradeMode::Decline)?;
        phases::admit_origin(ctx, req.headers())?;
        phases::authenticate(&self.auth, ctx, req.headers()).await?;
        phases::authorize(ctx)?;
        crate::tool_calls::check(ctx, req, &self.audit).await?;
        phases::rewrite(ctx, self.assertions.as_deref(), req.headers_mut());
        Ok(())
    }

    fn log(
        &self,
        ctx: &RequestContext,
        response: Response<Body>,
        started: Instant,
    ) -> Response<Body> {
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        self.metrics.request(
            ctx.app
                .as_ref()
                .map(|app| (app.name.as_str(), &app.metrics)),
            status,
            elapsed,
        );
        self.access_log.record(&AccessEntry {
            method: &ctx.method,
            host: &ctx.host,
            path: &ctx.path,
            app: ctx.app_name(),
            status,
            user: ctx.identity().map_or("-", |i| i.username.as_str()),
            client: ctx.client.client_ip,
            elapsed,
        });
        response
    }
}
