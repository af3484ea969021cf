//! `/errors`: every pattern, filtered (status, level, source, period, text), sorted and paged,
//! ignored ones hidden unless asked for; a status change for the ones ticked
//! (`POST /errors/status`). The filters are the API's (`GET /api/logs/errors`), by the same names.

use super::*;
use crate::api::{ErrorsQuery, errors_filter};

const ERRORS_PER_PAGE: u32 = 50;

#[derive(Template)]
#[template(path = "errors.html")]
struct ErrorsPageView {
    chrome: Chrome,
    rows: Vec<PatternLine>,
    total: u64,
    links: PageLinks,
    query: String,
    status: String,
    level: String,
    source: String,
    hours: String,
    sort: String,
    status_choices: Vec<(&'static str, &'static str)>,
    levels: Vec<&'static str>,
    hour_choices: Vec<(&'static str, &'static str)>,
    sort_choices: Vec<(&'static str, &'static str)>,
    moves: Vec<(&'static str, &'static str)>,
    problem: Option<String>,
    /// What the last status change did ("3 errors marked resolved.").
    done: Option<String>,
    /// This page with its filters: where a status change returns to.
    back: String,
}

#[derive(Deserialize, Default)]
struct ErrorsParams {
    query: Option<String>,
    status: Option<String>,
    level: Option<String>,
    source: Option<String>,
    hours: Option<String>,
    sort: Option<String>,
    page: Option<String>,
    /// After a status change: how many patterns changed, and to what.
    changed: Option<u32>,
    to: Option<String>,
}

pub(super) async fn errors_page(State(app): App, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(to_login) => return *to_login,
    };
    let p = params::<ErrorsParams>(&uri);
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (query, status, level, source, sort) =
        (text(&p.query), text(&p.status), text(&p.level), text(&p.source), text(&p.sort));
    let hours = text(&p.hours);
    let mut problem = None;
    let parsed_hours = match hours.parse::<u32>() {
        _ if hours.is_empty() => None,
        Ok(h) => Some(h),
        Err(_) => {
            problem = Some("hours must be a whole number from 1 to 8784".to_owned());
            None
        }
    };
    let page = page_number(p.page.as_deref()).unwrap_or_else(|e| {
        problem = Some(e);
        1
    });
    let filter = ErrorsQuery {
        sort: p.sort.clone(),
        status: p.status.clone(),
        source: p.source.clone(),
        level: p.level.clone(),
        query: p.query.clone(),
        hours: parsed_hours,
        limit: None,
        offset: None,
    };
    let now = now_ms();
    let found = match errors_filter(&filter, now) {
        Ok(q) if problem.is_none() => {
            let q = PatternQuery { limit: ERRORS_PER_PAGE, offset: (page - 1) * ERRORS_PER_PAGE, ..q };
            match app.store.list_patterns(&q).await {
                Ok(found) => found,
                Err(e) => return failed(&app, viewer, e),
            }
        }
        Ok(_) => faultline_store::PatternPage::default(),
        Err(e) => {
            problem = Some(e.to_string());
            faultline_store::PatternPage::default()
        }
    };
    let titles = match pattern_titles(&*app.store, &found.patterns).await {
        Ok(t) => t,
        Err(e) => return failed(&app, viewer, e),
    };
    let params = [
        ("query", query.clone()),
        ("status", status.clone()),
        ("level", level.clone()),
        ("source", source.clone()),
        ("hours", hours.clone()),
        ("sort", sort.clone()),
    ];
    let links = page_links("/errors", &params, page, ERRORS_PER_PAGE, found.total);
    let back = list_url("/errors", &params, (page > 1).then_some(page));
    let done = match (p.changed, p.to.as_deref().and_then(PatternStatus::parse)) {
        (Some(n), Some(to)) => {
            Some(format!("{n} {} marked {}.", if n == 1 { "error" } else { "errors" }, to.as_str()))
        }
        _ => None,
    };
    let view = ErrorsPageView {
        chrome: chrome(&app, "errors", viewer, "Errors"),
        rows: found
            .patterns
            .iter()
            .map(|r| PatternLine::new(r, r.occurrence_count as u64, now, &titles))
            .collect(),
        total: found.total,
        links,
        query,
        status,
        level,
        source,
        hours,
        sort,
        status_choices: vec![
            ("", "all but ignored"),
            ("new", "new"),
            ("known", "known"),
            ("resolved", "resolved"),
            ("ignored", "ignored"),
            ("all", "all"),
        ],
        levels: vec!["CRITICAL", "ERROR", "WARNING"],
        hour_choices: vec![
            ("", "any time"),
            ("1", "1 hour"),
            ("24", "24 hours"),
            ("168", "7 days"),
            ("720", "30 days"),
        ],
        sort_choices: vec![
            ("count", "most occurrences"),
            ("last_seen", "last seen"),
            ("first_seen", "first seen"),
        ],
        moves: vec![
            ("resolved", "Resolve"),
            ("ignored", "Ignore"),
            ("known", "Mark known"),
            ("new", "Mark new"),
        ],
        problem,
        done,
        back,
    };
    let code = if view.problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    render(code, &view, &view.chrome.viewer)
}

/// A status change for several patterns at once: the form's `fingerprint` fields (repeated),
/// `status`, `csrf`, and `back` (the list to return to).
pub(super) async fn errors_status(
    State(app): App,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let mut csrf = String::new();
    let mut status = String::new();
    let mut back = None;
    let mut fingerprints = Vec::new();
    for (key, value) in form_urlencoded::parse(&body) {
        match &*key {
            "csrf" => csrf = value.into_owned(),
            "status" => status = value.into_owned(),
            "back" => back = Some(value.into_owned()),
            "fingerprint" => fingerprints.push(value.into_owned()),
            _ => {}
        }
    }
    let viewer = match writer(&app, &headers, &uri, &csrf) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let Some(to) = PatternStatus::parse(&status) else {
        return message(
            &app,
            viewer,
            StatusCode::BAD_REQUEST,
            "Unknown status",
            "Use new, known, resolved or ignored.",
        );
    };
    if fingerprints.is_empty() {
        return message(
            &app,
            viewer,
            StatusCode::BAD_REQUEST,
            "Nothing selected",
            "Tick the errors to change first.",
        );
    }
    let mut changed = 0u32;
    let now = now_ms();
    for f in &fingerprints {
        match app.store.set_pattern_status(f, to, now).await {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => return failed(&app, viewer, e),
        }
    }
    let back = safe_next(back).strip_prefix("/errors").map(str::to_owned);
    let query = back.as_deref().and_then(|b| b.strip_prefix('?')).unwrap_or("");
    let mut to_list: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "changed" && k != "to")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    to_list.push(("changed".into(), changed.to_string()));
    to_list.push(("to".into(), to.as_str().to_owned()));
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(to_list).finish();
    see_other(&format!("/errors?{query}"))
}
