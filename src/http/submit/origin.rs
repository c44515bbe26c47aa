//! The one cross-site check of the submission routes ([`is_cross_site`]):
//! whether a browser says a post comes from another web site. Refused as
//! `cross_site` (403) on both routes; `Front::check` (`http/submit/front.rs`)
//! says which posts are checked.

use axum::http::{HeaderMap, header};

/// A browser says this post comes from another site: `Sec-Fetch-Site` other
/// than `same-origin`/`none`, or (from a browser that does not send
/// `Sec-Fetch-Site`) an `Origin` other than this site. `Origin: null` counts
/// as another site: a sandboxed frame on any page sends it. Our own pages
/// send their real origin on a post (their referrer policy is
/// `same-origin`), or `Sec-Fetch-Site: same-origin` beside the `null`.
pub fn is_cross_site(headers: &HeaderMap, public_origin: Option<String>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let origin = origin.trim().to_ascii_lowercase();
    match public_origin {
        Some(expected) => origin != expected,
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_ascii_lowercase);
            let authority = origin.split_once("://").map(|(_, a)| a);
            host.is_none() || authority != host.as_deref()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (request headers, configured public origin, refused as cross-site)
    type Case = (
        &'static [(&'static str, &'static str)],
        Option<String>,
        bool,
    );

    #[test]
    fn cross_site_posts_are_told_from_same_site_ones() {
        let public = || Some("https://tips.example.org".to_owned());
        let cases: [Case; 12] = [
            (&[], None, false),
            (&[("sec-fetch-site", "same-origin")], None, false),
            (&[("sec-fetch-site", "none")], None, false),
            (&[("sec-fetch-site", "same-site")], None, true),
            (
                &[("sec-fetch-site", "cross-site"), ("origin", "null")],
                None,
                true,
            ),
            // A sandboxed frame, or an older browser on another site's
            // no-referrer page.
            (&[("origin", "null")], public(), true),
            (&[("origin", "null")], None, true),
            (
                &[("origin", "null"), ("sec-fetch-site", "same-origin")],
                public(),
                false,
            ),
            (&[("origin", "https://tips.example.org")], public(), false),
            (&[("origin", "https://evil.example")], public(), true),
            (
                &[("origin", "http://a.test:8080"), ("host", "a.test:8080")],
                None,
                false,
            ),
            (
                &[("origin", "http://evil.test"), ("host", "a.test:8080")],
                None,
                true,
            ),
        ];
        for (headers, public_origin, cross) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(*k, v.parse().expect("value"));
            }
            assert_eq!(is_cross_site(&map, public_origin), cross, "{headers:?}");
        }
    }
}
