//! An in-memory library of shelves and books: the backend of `protogate demo`
//! and of the integration tests.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::Stream;
use prost::Message;
use prost_types::{Any, Timestamp};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::pb::google::api::HttpBody;
use crate::pb::google::rpc;
use crate::pb::library::v1::library_service_server::LibraryService;
use crate::pb::library::v1::*;

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;
const ERROR_DOMAIN: &str = "library.example.com";

/// The service state behind one lock: the demo's load is small.
#[derive(Debug, Default)]
pub struct Library {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    shelves: BTreeMap<String, Shelf>,
    books: BTreeMap<String, Book>,
    covers: BTreeMap<String, HttpBody>,
    next_id: u64,
}

type BookStream = Pin<Box<dyn Stream<Item = Result<Book, Status>> + Send + 'static>>;

impl Library {
    /// A library with two shelves and a few books, as the README's examples expect.
    pub fn seeded() -> Self {
        let library = Self::default();
        if let Ok(mut state) = library.state.lock() {
            state.seed();
        }
        library
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, Status> {
        self.state.lock().map_err(|_| Status::internal("library state poisoned"))
    }
}

impl State {
    fn seed(&mut self) {
        let now = now();
        for (id, theme) in [("1", "Fiction"), ("2", "History")] {
            let name = format!("shelves/{id}");
            let shelf = Shelf { name: name.clone(), theme: theme.into(), create_time: Some(now) };
            self.shelves.insert(name, shelf);
        }
        let books = [
            ("shelves/1/books/1", "The Left Hand of Darkness", "Ursula K. Le Guin", Genre::Fiction, 304, 1_000_000),
            ("shelves/1/books/2", "A Wizard of Earthsea", "Ursula K. Le Guin", Genre::Fiction, 183, 2_500_000),
            ("shelves/1/books/3", "Solaris", "Stanisław Lem", Genre::Fiction, 204, 9_007_199_254_740_993),
            ("shelves/2/books/1", "SPQR", "Mary Beard", Genre::History, 608, 500_000),
        ];
        for (name, title, author, genre, pages, sold) in books {
            let book = Book {
                name: name.into(),
                title: title.into(),
                author: author.into(),
                genre: genre as i32,
                page_count: pages,
                copies_sold: sold,
                tags: vec!["classic".into()],
                published: true,
                publish_time: Some(Timestamp { seconds: 0, nanos: 0 }),
                update_time: Some(now),
            };
            self.books.insert(name.into(), book);
        }
        let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="60" height="90"><rect width="60" height="90" fill="#345"/></svg>"##;
        let cover = HttpBody { content_type: "image/svg+xml".into(), data: svg.to_vec(), extensions: vec![] };
        self.covers.insert("shelves/1/books/1".into(), cover);
        self.next_id = 100;
    }

    fn shelf(&self, name: &str) -> Result<&Shelf, Status> {
        self.shelves.get(name).ok_or_else(|| not_found("library.v1.Shelf", name))
    }

    fn book_mut(&mut self, name: &str) -> Result<&mut Book, Status> {
        self.books.get_mut(name).ok_or_else(|| not_found("library.v1.Book", name))
    }
}

#[tonic::async_trait]
impl LibraryService for Library {
    async fn list_shelves(
        &self,
        request: Request<ListShelvesRequest>,
    ) -> Result<Response<ListShelvesResponse>, Status> {
        let request = request.into_inner();
        let state = self.state()?;
        let shelves: Vec<Shelf> = state.shelves.values().cloned().collect();
        let (shelves, next_page_token) = page(shelves, request.page_size, &request.page_token)?;
        Ok(Response::new(ListShelvesResponse { shelves, next_page_token }))
    }

    async fn create_shelf(&self, request: Request<CreateShelfRequest>) -> Result<Response<Shelf>, Status> {
        let request = request.into_inner();
        let mut shelf = request.shelf.unwrap_or_default();
        if request.shelf_id.is_empty() || request.shelf_id.contains('/') {
            return Err(bad_request(&[("shelf_id", "must be set and must not contain '/'")]));
        }
        let name = format!("shelves/{}", request.shelf_id);
        let mut state = self.state()?;
        if state.shelves.contains_key(&name) {
            let info = rpc::ErrorInfo {
                reason: "SHELF_EXISTS".into(),
                domain: ERROR_DOMAIN.into(),
                metadata: [("shelf".to_string(), name.clone())].into(),
            };
            return Err(with_details(
                Code::AlreadyExists,
                format!("{name} already exists"),
                "google.rpc.ErrorInfo",
                &info,
            ));
        }
        shelf.name = name.clone();
        shelf.create_time = Some(now());
        state.shelves.insert(name, shelf.clone());
        Ok(Response::new(shelf))
    }

    async fn get_shelf(&self, request: Request<GetShelfRequest>) -> Result<Response<Shelf>, Status> {
        let state = self.state()?;
        Ok(Response::new(state.shelf(&request.get_ref().name)?.clone()))
    }

    async fn delete_shelf(&self, request: Request<DeleteShelfRequest>) -> Result<Response<()>, Status> {
        let name = request.into_inner().name;
        let mut state = self.state()?;
        state.shelf(&name)?;
        state.shelves.remove(&name);
        let prefix = format!("{name}/");
        state.books.retain(|book, _| !book.starts_with(&prefix));
        state.covers.retain(|book, _| !book.starts_with(&prefix));
        Ok(Response::new(()))
    }

    async fn list_books(&self, request: Request<ListBooksRequest>) -> Result<Response<ListBooksResponse>, Status> {
        let request = request.into_inner();
        let state = self.state()?;
        if !request.parent.is_empty() {
            state.shelf(&request.parent)?;
        }
        let prefix = format!("{}/", request.parent);
        let matching: Vec<Book> = state
            .books
            .values()
            .filter(|b| request.parent.is_empty() || b.name.starts_with(&prefix))
            .filter(|b| request.author.is_empty() || b.author == request.author)
            .filter(|b| request.genres.is_empty() || request.genres.contains(&b.genre))
            .filter(|b| match (&request.published_after, &b.publish_time) {
                (Some(after), Some(at)) => (at.seconds, at.nanos) > (after.seconds, after.nanos),
                (Some(_), None) => false,
                (None, _) => true,
            })
            .cloned()
            .collect();
        let total_size = i32::try_from(matching.len()).unwrap_or(i32::MAX);
        let (books, next_page_token) = page(matching, request.page_size, &request.page_token)?;
        Ok(Response::new(ListBooksResponse { books, next_page_token, total_size }))
    }

    async fn get_author(&self, request: Request<GetAuthorRequest>) -> Result<Response<Author>, Status> {
        let name = &request.get_ref().name;
        let born = match name.strip_prefix("authors/") {
            Some("Ursula K. Le Guin") => 1929,
            Some("Stanisław Lem") => 1921,
            Some("Mary Beard") => 1955,
            _ => return Err(not_found("library.v1.Author", name)),
        };
        let display_name = name.trim_start_matches("authors/").to_string();
        Ok(Response::new(Author { name: name.clone(), display_name, born }))
    }

    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        let mut state = self.state()?;
        Ok(Response::new(state.book_mut(&request.get_ref().name)?.clone()))
    }

    async fn create_book(&self, request: Request<CreateBookRequest>) -> Result<Response<Book>, Status> {
        let request = request.into_inner();
        let mut book = request.book.unwrap_or_default();
        let mut violations = Vec::new();
        if book.title.trim().is_empty() {
            violations.push(("book.title", "must not be empty"));
        }
        if book.page_count < 0 {
            violations.push(("book.page_count", "must not be negative"));
        }
        if request.book_id.contains('/') {
            violations.push(("book_id", "must not contain '/'"));
        }
        if !violations.is_empty() {
            return Err(bad_request(&violations));
        }
        let mut state = self.state()?;
        state.shelf(&request.parent)?;
        let id = if request.book_id.is_empty() {
            state.next_id += 1;
            state.next_id.to_string()
        } else {
            request.book_id
        };
        book.name = format!("{}/books/{id}", request.parent);
        if state.books.contains_key(&book.name) {
            return Err(Status::already_exists(format!("{} already exists", book.name)));
        }
        book.update_time = Some(now());
        state.books.insert(book.name.clone(), book.clone());
        Ok(Response::new(book))
    }

    async fn update_book(&self, request: Request<UpdateBookRequest>) -> Result<Response<Book>, Status> {
        let request = request.into_inner();
        let patch = request.book.unwrap_or_default();
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let unknown: Vec<&String> = paths.iter().filter(|p| !UPDATABLE.contains(&p.as_str())).collect();
        if !unknown.is_empty() {
            let violations: Vec<(&str, &str)> =
                unknown.iter().map(|p| (p.as_str(), "not an updatable field")).collect();
            return Err(bad_request(&violations));
        }
        let mut state = self.state()?;
        let book = state.book_mut(&patch.name)?;
        let all = paths.is_empty();
        let wants = |field: &str| all || paths.iter().any(|p| p == field);
        if wants("title") {
            book.title = patch.title;
        }
        if wants("author") {
            book.author = patch.author;
        }
        if wants("genre") {
            book.genre = patch.genre;
        }
        if wants("page_count") {
            book.page_count = patch.page_count;
        }
        if wants("copies_sold") {
            book.copies_sold = patch.copies_sold;
        }
        if wants("tags") {
            book.tags = patch.tags;
        }
        book.update_time = Some(now());
        Ok(Response::new(book.clone()))
    }

    async fn delete_book(&self, request: Request<DeleteBookRequest>) -> Result<Response<()>, Status> {
        let name = request.into_inner().name;
        let mut state = self.state()?;
        state.book_mut(&name)?;
        state.books.remove(&name);
        state.covers.remove(&name);
        Ok(Response::new(()))
    }

    async fn publish_book(&self, request: Request<PublishBookRequest>) -> Result<Response<Book>, Status> {
        let request = request.into_inner();
        let mut state = self.state()?;
        let book = state.book_mut(&request.name)?;
        if book.published {
            let failure = rpc::PreconditionFailure {
                violations: vec![rpc::precondition_failure::Violation {
                    r#type: "STATE".into(),
                    subject: request.name.clone(),
                    description: "the book is already published".into(),
                }],
            };
            let message = format!("{} is already published", request.name);
            return Err(with_details(Code::FailedPrecondition, message, "google.rpc.PreconditionFailure", &failure));
        }
        book.published = true;
        book.publish_time = Some(request.publish_time.unwrap_or_else(now));
        book.update_time = Some(now());
        Ok(Response::new(book.clone()))
    }

    type StreamBooksStream = BookStream;

    async fn stream_books(&self, request: Request<StreamBooksRequest>) -> Result<Response<BookStream>, Status> {
        let parent = request.into_inner().parent;
        let state = self.state()?;
        state.shelf(&parent)?;
        let prefix = format!("{parent}/");
        let books: Vec<Result<Book, Status>> =
            state.books.values().filter(|b| b.name.starts_with(&prefix)).cloned().map(Ok).collect();
        Ok(Response::new(Box::pin(futures_util::stream::iter(books))))
    }

    type LookupBooksStream = BookStream;

    async fn lookup_books(&self, request: Request<Streaming<GetBookRequest>>) -> Result<Response<BookStream>, Status> {
        let state = self.state.clone();
        let names = request.into_inner();
        let books = futures_util::stream::unfold(Some(names), move |names| {
            let state = state.clone();
            async move {
                let mut names = names?;
                let name = match names.message().await {
                    Ok(Some(request)) => request.name,
                    Ok(None) => return None,
                    Err(status) => return Some((Err(status), None)),
                };
                let found = match state.lock() {
                    Ok(mut state) => state.book_mut(&name).map(|b| b.clone()),
                    Err(_) => Err(Status::internal("library state poisoned")),
                };
                let next = found.is_ok().then_some(names);
                Some((found, next))
            }
        });
        Ok(Response::new(Box::pin(books)))
    }

    async fn get_book_cover(&self, request: Request<GetBookCoverRequest>) -> Result<Response<HttpBody>, Status> {
        let name = request.into_inner().name;
        let mut state = self.state()?;
        state.book_mut(&name)?;
        let cover = state.covers.get(&name).cloned();
        cover.map(Response::new).ok_or_else(|| not_found("library.v1.Cover", &format!("{name}/cover")))
    }

    async fn upload_book_cover(&self, request: Request<UploadBookCoverRequest>) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let cover = request.cover.unwrap_or_default();
        if !cover.content_type.starts_with("image/") {
            return Err(bad_request(&[("cover", "the content type must be an image/* type")]));
        }
        let mut state = self.state()?;
        state.book_mut(&request.name)?;
        state.covers.insert(request.name, cover);
        Ok(Response::new(()))
    }

    async fn submit_book_cover(&self, request: Request<SubmitBookCoverRequest>) -> Result<Response<BookCover>, Status> {
        let request = request.into_inner();
        let Some(cover) = request.cover.filter(|c| !c.data.is_empty()) else {
            return Err(bad_request(&[("cover", "send the image as a file part named cover")]));
        };
        if !cover.content_type.starts_with("image/") {
            return Err(bad_request(&[("cover", "the content type must be an image/* type")]));
        }
        let mut state = self.state()?;
        state.book_mut(&request.name)?;
        if !request.replace && state.covers.contains_key(&request.name) {
            return Err(Status::already_exists(format!("{} already has a cover; send replace=true", request.name)));
        }
        let stored = BookCover {
            name: format!("{}/cover", request.name),
            content_type: cover.content_type.clone(),
            size_bytes: i64::try_from(cover.data.len()).unwrap_or(i64::MAX),
        };
        state.covers.insert(request.name, cover);
        Ok(Response::new(stored))
    }
}

const UPDATABLE: [&str; 6] = ["title", "author", "genre", "page_count", "copies_sold", "tags"];

/// Pages through `items`; tokens are opaque offsets.
fn page<T>(items: Vec<T>, page_size: i32, token: &str) -> Result<(Vec<T>, String), Status> {
    if page_size < 0 {
        return Err(bad_request(&[("page_size", "must not be negative")]));
    }
    let size = match usize::try_from(page_size).unwrap_or(0) {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    };
    let start = match token {
        "" => 0,
        t => t.parse::<usize>().map_err(|_| bad_request(&[("page_token", "is not a token this service issued")]))?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = if start + size < total { (start + size).to_string() } else { String::new() };
    Ok((page, next))
}

fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

fn not_found(resource_type: &str, name: &str) -> Status {
    let info = rpc::ResourceInfo {
        resource_type: resource_type.into(),
        resource_name: name.into(),
        owner: String::new(),
        description: format!("{name} does not exist"),
    };
    with_details(Code::NotFound, format!("{name} not found"), "google.rpc.ResourceInfo", &info)
}

fn bad_request(violations: &[(&str, &str)]) -> Status {
    let detail = rpc::BadRequest {
        field_violations: violations
            .iter()
            .map(|(field, description)| rpc::bad_request::FieldViolation {
                field: (*field).into(),
                description: (*description).into(),
                ..Default::default()
            })
            .collect(),
    };
    let fields: Vec<&str> = violations.iter().map(|(f, _)| *f).collect();
    let message = format!("invalid fields: {}", fields.join(", "));
    with_details(Code::InvalidArgument, message, "google.rpc.BadRequest", &detail)
}

/// A status carrying one typed detail in `grpc-status-details-bin`.
pub fn with_details(code: Code, message: String, type_name: &str, detail: &impl Message) -> Status {
    let status = rpc::Status {
        code: code as i32,
        message: message.clone(),
        details: vec![Any { type_url: format!("type.googleapis.com/{type_name}"), value: detail.encode_to_vec() }],
    };
    Status::with_details(code, message, status.encode_to_vec().into())
}
