//! The planner's case table: configurations in, exact plans or every
//! problem out, against the example library's snapshot.

use std::sync::Arc;

use super::plan::{Piece, Reference, Source, Step, TextPart, plan};
use crate::config::{Config, Flags};
use crate::registry::{RegisteredSet, Sets, Snapshot, UpstreamMap};
use crate::transcode::JsonOptions;
use crate::upstream::Upstreams;

pub(crate) fn snapshot() -> Snapshot {
    let mut set = RegisteredSet {
        name: "library".into(),
        upstream: Some("http://library.internal:1".into()),
        versions: Vec::new(),
        active: 0,
        from_file: false,
    };
    set.push(Arc::new(crate::pb::LIBRARY_DESCRIPTOR_SET.to_vec()), 1);
    let sets: Sets = [("library".to_string(), set)].into();
    let upstreams = Upstreams::new(crate::config::PoolSettings::default(), 4 << 20).unwrap();
    Snapshot::build(&sets, &UpstreamMap::default(), &upstreams, 1).unwrap()
}

const OVERVIEW: &str = include_str!("../../examples/compose/overview.toml");

/// Plans the one composite of `toml`: its problems, or none.
fn problems(toml: &str) -> Vec<String> {
    let config = Config::from_toml(toml, &Flags::default()).unwrap();
    match plan(&config.compose[0], &snapshot(), &JsonOptions::default()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

#[tokio::test]
async fn the_overview_plans_into_the_expected_dependencies() {
    let config = Config::from_toml(OVERVIEW, &Flags::default()).unwrap();
    let snapshot = snapshot();
    let planned = plan(&config.compose[0], &snapshot, &JsonOptions::default()).unwrap();
    let needs: Vec<(&str, &[usize])> = planned.calls.iter().map(|c| (c.name.as_str(), c.needs.as_slice())).collect();
    assert_eq!(needs, [("shelf", &[][..]), ("books", &[0][..]), ("authors", &[1][..])]);
    assert_eq!(planned.variables, ["shelf"]);
    let name = Piece::Text(vec![
        TextPart::Literal("shelves/".into()),
        TextPart::Ref(Reference { source: Source::Variable(0), path: vec![] }),
    ]);
    assert_eq!(planned.calls[0].request, Piece::Object(vec![("name".into(), name)]));
    let books = Reference { source: Source::Call(1), path: vec![Step::field("books", "books")] };
    assert_eq!(planned.calls[2].for_each, Some(books));
    assert!(planned.calls[2].optional && !planned.calls[0].optional);
    // What is read of each answer: shelf and books by later calls, all
    // three by the answer.
    let read: Vec<(bool, bool)> = planned.calls.iter().map(|c| (c.referenced, c.shown)).collect();
    assert_eq!(read, [(true, true), (true, true), (false, true)]);
    let only_a_key = OVERVIEW.replace("shelf = \"shelf\"\n", "");
    let config = Config::from_toml(&only_a_key, &Flags::default()).unwrap();
    let planned = plan(&config.compose[0], &snapshot, &JsonOptions::default()).unwrap();
    let read: Vec<(bool, bool)> = planned.calls.iter().map(|c| (c.referenced, c.shown)).collect();
    assert_eq!(read, [(true, false), (true, true), (false, true)]);
}

const HEAD: &str = "[[compose]]\nroute = \"GET /v1/x/{shelf}:peek\"\n";

fn call(name: &str, method: &str, request: &str) -> String {
    format!(
        "[[compose.calls]]\nname = {name:?}\nmethod = \"library.v1.LibraryService.{method}\"\nrequest = {request}\n"
    )
}

#[tokio::test]
async fn every_problem_is_reported_with_its_place() {
    let shelf = call("shelf", "GetShelf", r#"{ name = "shelves/{shelf}" }"#);
    let response = "[compose.response]\nshelf = \"shelf\"\n";
    let books = call("books", "ListBooks", r#"{ parent = "{shelf.name}" }"#);
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("{HEAD}{shelf}{response}"), vec![]),
        (
            format!("{HEAD}{}{response}", call("shelf", "GetShelff", "{}")),
            vec!["call \"shelf\": unknown method library.v1.LibraryService.GetShelff"],
        ),
        (
            format!("{HEAD}{}{response}", call("shelf", "GetShelf", r#"{ nam = "x" }"#)),
            vec!["call \"shelf\": request: invalid JSON body: unrecognized field name 'nam'"],
        ),
        (
            format!("{HEAD}{shelf}{}{response}", call("books", "ListBooks", r#"{ parent = "{shelf.nme}" }"#)),
            vec!["call \"books\": request.parent: {shelf.nme}: library.v1.Shelf has no field \"nme\""],
        ),
        (
            format!("{HEAD}{}{response}", call("shelf", "GetShelf", r#"{ name = "{nowhere}" }"#)),
            vec![
                "call \"shelf\": request.name: {nowhere}: \"nowhere\" is no path variable, declared query parameter or call",
            ],
        ),
        (
            format!("{HEAD}{shelf}{}{response}", call("books", "ListBooks", r#"{ page_size = "{shelf.name}" }"#)),
            vec!["call \"books\": request: "],
        ),
        (
            format!(
                "{HEAD}{}{}{response}",
                call("shelf", "GetShelf", r#"{ name = "{books.nextPageToken}" }"#),
                call("books", "ListBooks", r#"{ parent = "{shelf.name}" }"#)
            ),
            vec!["calls shelf → books → shelf depend on each other in a cycle"],
        ),
        (
            format!("{HEAD}{}{response}", call("shelf", "StreamBooks", r#"{ parent = "{shelf}" }"#)),
            vec![
                "call \"shelf\": library.v1.LibraryService.StreamBooks streams; a composite needs one answer per call",
            ],
        ),
        (
            format!("{HEAD}{shelf}[compose.response]\nshelf = \"shelf.nme\"\nother = \"nobody\"\n"),
            vec![
                "response.other: \"nobody\" names no call",
                "response.shelf: \"shelf.nme\": library.v1.Shelf has no field \"nme\"",
            ],
        ),
        (
            format!("[[compose]]\nroute = \"GET /v1/{{shelf=shelves/*}}\"\n{shelf}{response}"),
            vec!["the route conflicts with GET /v1/{name=shelves/*} of library.v1.LibraryService.GetShelf"],
        ),
        (
            format!("{HEAD}{shelf}{}{response}", call("authors", "GetAuthor", r#"{ name = "{item.author}" }"#)),
            vec!["call \"authors\": request.name: {item.author}: `item` exists only in a for_each call"],
        ),
        (
            format!("{HEAD}{shelf}{}for_each = \"shelf.name\"\n{response}", call("a", "GetAuthor", "{}")),
            vec!["call \"a\": for_each \"shelf.name\" is not a repeated field of an earlier call"],
        ),
        (
            format!(
                "{HEAD}{shelf}{books}{}{response}",
                call("a", "GetAuthor", r#"{ name = "{books.books[0].author}" }"#)
            ),
            vec![],
        ),
        (
            format!("{HEAD}{shelf}{books}{}{response}", call("a", "GetAuthor", r#"{ name = "{books.books.author}" }"#)),
            vec!["call \"a\": request.name: {books.books.author}: goes through a repeated field before \"author\""],
        ),
        (
            format!(
                "{HEAD}{shelf}{books}{}{response}",
                call("a", "GetAuthor", r#"{ name = "{books.books[x].author}" }"#)
            ),
            vec!["call \"a\": request.name: {books.books[x].author}: \"books[x]\": an index is `[N]`"],
        ),
        (
            format!("{HEAD}{shelf}{books}{}{response}", call("a", "GetAuthor", r#"{ name = "{shelf.name[0]}" }"#)),
            vec!["call \"a\": request.name: {shelf.name[0]}: \"name[0]\" indexes \"name\", which is not repeated"],
        ),
        (
            format!(
                "{HEAD}{shelf}{books}[compose.response]\nfirst = \"books.books[0]\"\nbad = \"books.books[0].nope\"\n"
            ),
            vec!["response.bad: \"books.books[0].nope\": library.v1.Book has no field \"nope\""],
        ),
    ];
    let mut wrong = Vec::new();
    for (toml, expected) in cases {
        let got: Vec<String> = problems(&toml)
            .iter()
            .map(|p| {
                p.strip_prefix("composite GET /v1/").and_then(|p| p.split_once(": ")).map_or(p.clone(), |p| p.1.into())
            })
            .collect();
        let fits = got.len() == expected.len() && got.iter().zip(&expected).all(|(g, w)| g.starts_with(w));
        if !fits {
            wrong.push(format!("{toml}\ngot  {got:?}\nwant {expected:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn configuration_mistakes_are_found_before_any_snapshot() {
    let toml = "[[compose]]\nroute = \"POST /v1/x\"\n[[compose]]\nroute = \"GET /v1/y\"\n\
                [[compose.calls]]\nname = \"item\"\nmethod = \"a.B.C\"\n[[compose.calls]]\nname = \"item\"\nmethod = \"a.B.C\"\n";
    let errors = Config::from_toml(toml, &Flags::default()).unwrap_err().0;
    let expected = [
        "config: `compose[0]` (POST /v1/x): \"POST\": composites are GET routes",
        "config: `compose[1]` (GET /v1/y): call name \"item\" is reserved or not a plain name",
        "config: `compose[1]` (GET /v1/y): two calls are named \"item\"",
        "config: `compose[1]` (GET /v1/y): call name \"item\" is reserved or not a plain name",
        "config: `compose[1]` (GET /v1/y): `response` is empty: name the parts of the answer",
    ];
    assert_eq!(errors, expected);
}
