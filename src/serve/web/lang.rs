//! The console's language for one request: the `zns_lang` cookie (set by
//! the VI | EN switch in every page's header), else the browser's
//! `Accept-Language`, else Vietnamese — the people who send campaigns.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

pub const LANG_COOKIE: &str = "zns_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Vi,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Vi, Lang::En];

    /// The code of `<html lang>` and of the locale files.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "vi" => Some(Lang::Vi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The first language of ours in an `Accept-Language` list, by weight
    /// (`en-US,en;q=0.9,vi;q=0.8` → English; a `q=0` one is refused).
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, item) in header.split(',').enumerate().take(32) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let primary = tag.split('-').next().unwrap_or("");
            let Some(lang) = Lang::from_code(primary) else {
                continue;
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|v| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            // Higher weight wins; at the same weight, the earlier one.
            if best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi)) {
                best = Some((q, i, lang));
            }
        }
        best.map(|(_, _, l)| l)
    }

    pub fn of(headers: &HeaderMap) -> Lang {
        let jar = CookieJar::from_headers(headers);
        if let Some(l) = jar
            .get(LANG_COOKIE)
            .and_then(|c| Lang::from_code(c.value()))
        {
            return l;
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(Lang::from_accept_language)
            .unwrap_or_default()
    }
}

/// Who is looking: their language and the page they are on (where the
/// language switch brings them back to).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub lang: Lang,
    pub here: String,
}

impl Viewer {
    pub fn of(parts: &Parts) -> Viewer {
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let here = if parts.method == axum::http::Method::GET {
            here
        } else {
            page_of_form(parts.uri.path())
        };
        Viewer {
            lang: Lang::of(&parts.headers),
            here,
        }
    }
}

/// The page a form's answer belongs to: the switch comes back with a GET,
/// and `/ui/...` answers only POSTs (a 405 after switching the language).
fn page_of_form(path: &str) -> String {
    match path.strip_prefix("/ui/campaigns/") {
        Some(rest) => match rest.split_once('/') {
            Some((name, _)) => format!("/campaigns/{name}"),
            None => "/".into(),
        },
        None if path == "/ui/upload" => "/new".into(),
        None => "/".into(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Viewer::of(parts))
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct Next {
    next: Option<String>,
}

/// A path of this site only (`/x`, not `//host` nor `/\host`), so the
/// switch cannot send anyone elsewhere.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && !p.chars().any(|c| c.is_control()) =>
        {
            p
        }
        _ => "/",
    }
}

/// `GET /lang/{code}?next=/page`: remember the choice for a year, back to
/// the page. A plain link, so it works without JavaScript; a GET because it
/// changes nothing but how pages read.
pub async fn switch(Path(code): Path<String>, Query(q): Query<Next>, jar: CookieJar) -> Response {
    let back = local_path(q.next.as_deref()).to_string();
    let Some(lang) = Lang::from_code(&code) else {
        return Redirect::to(&back).into_response();
    };
    let cookie = Cookie::build((LANG_COOKIE, lang.code()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::days(365))
        .build();
    (jar.add(cookie), Redirect::to(&back)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_answer_switches_back_to_its_page() {
        assert_eq!(
            page_of_form("/ui/campaigns/h%C3%B3a/start"),
            "/campaigns/h%C3%B3a"
        );
        assert_eq!(page_of_form("/ui/upload"), "/new");
        assert_eq!(page_of_form("/login"), "/");
    }

    #[test]
    fn accept_language_by_weight() {
        assert_eq!(Lang::from_accept_language("vi-VN,vi;q=0.9"), Some(Lang::Vi));
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,vi;q=0.8"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("fr;q=1, vi;q=0.5, en;q=0.7"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("en;q=0, vi;q=0.1"),
            Some(Lang::Vi)
        );
        assert_eq!(Lang::from_accept_language("fr-FR, de"), None);
        assert_eq!(Lang::from_accept_language(""), None);
    }

    #[test]
    fn cookie_before_accept_language_before_default() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h), Lang::Vi);
        h.insert(header::ACCEPT_LANGUAGE, "en-GB".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert(header::COOKIE, "zns_lang=vi".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::Vi);
        h.insert(header::COOKIE, "zns_lang=xx".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::En);
    }

    #[test]
    fn the_switch_only_goes_back_to_this_site() {
        assert_eq!(
            local_path(Some("/campaigns/a?page=2")),
            "/campaigns/a?page=2"
        );
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }
}
