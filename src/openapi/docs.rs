//! `/docs`: Swagger UI (schemas, example bodies, try-it with the
//! document's security schemes, search), its files shipped inside the
//! binary by `swagger-ui-redist` so the page works offline.

use std::io::Write;
use std::sync::LazyLock;

use swagger_ui_redist::{SwaggerUi, SwaggerUiStaticFile};

/// Where the page and its files are served.
pub const PAGE_PATH: &str = "/docs";
const FILES_PREFIX: &str = "/docs/";

/// One file of the page.
#[derive(Debug)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// The body gzipped once, the first time it is asked for: the 1.4 MB
    /// bundle cost a fresh compression on every page load.
    gzipped: LazyLock<Vec<u8>, Box<dyn FnOnce() -> Vec<u8> + Send>>,
}

impl Asset {
    pub fn gzipped(&self) -> &[u8] {
        &self.gzipped
    }
}

static PAGE: LazyLock<String> = LazyLock::new(|| {
    let mut ui = SwaggerUi::new();
    ui.title("protogate API");
    for file in SwaggerUiStaticFile::all() {
        ui.override_file_path(*file, format!("{FILES_PREFIX}{}", file.file_name()));
    }
    ui.config()
        .urls(["/openapi.json"])
        .try_it_out_enabled(true)
        .filter(true)
        .persist_authorization(true)
        .display_request_duration(true)
        .deep_linking(true)
        .display_operation_id(true);
    // Only serde serialization of a fixed config can fail here.
    ui.serve().unwrap_or_else(|e| format!("<!doctype html><p>the docs page failed to render: {e}</p>"))
});

static ASSETS: LazyLock<Vec<(&'static str, Asset)>> = LazyLock::new(|| {
    SwaggerUi::static_files()
        .iter()
        .map(|(file, body)| {
            let body: &'static [u8] = body;
            let content_type = match file.file_name().rsplit_once('.').map(|(_, ext)| ext) {
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            let gzipped: LazyLock<Vec<u8>, Box<dyn FnOnce() -> Vec<u8> + Send>> =
                LazyLock::new(Box::new(move || gzip(body)));
            (file.file_name(), Asset { content_type, body, gzipped })
        })
        .collect()
});

/// The page's HTML.
pub fn page() -> &'static str {
    &PAGE
}

/// A file of the page by its request path (`/docs/swagger-ui.css`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let name = path.strip_prefix(FILES_PREFIX)?;
    ASSETS.iter().find(|(file, _)| *file == name).map(|(_, asset)| asset)
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_files_and_the_document() {
        let page = page();
        assert!(page.contains(r#""url": "/openapi.json""#), "{page}");
        for file in SwaggerUiStaticFile::all() {
            let path = format!("{FILES_PREFIX}{}", file.file_name());
            assert!(page.contains(&path), "{path} in {page}");
            let asset = asset(&path).unwrap_or_else(|| panic!("{path} is served"));
            assert!(!asset.body.is_empty());
        }
        assert!(asset("/docs/../Cargo.toml").is_none());
        assert!(asset("/docs/").is_none());
        let css = asset("/docs/swagger-ui.css").unwrap();
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(css.gzipped()), &mut unzipped).unwrap();
        assert_eq!(unzipped, css.body);
    }
}
