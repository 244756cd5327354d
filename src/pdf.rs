//! Invoice documents as PDF.
//!
//! The document is written with `pdf-writer`, a pure-Rust, low-level PDF writer: no native
//! library, no external process, and the same input always yields the same bytes (the document
//! carries no timestamp). Text is set in Liberation Sans (SIL Open Font License, see
//! `assets/fonts/LICENSE-LiberationSans.txt`), compiled into the binary and embedded as a subset
//! of the glyphs actually used, so the invoice looks the same in every viewer and every character
//! the font covers ("Müller GmbH", "€") renders; characters it lacks print as "?". The font is a
//! Type0/CIDFontType2 font with Identity-H encoding, a `/W` widths array and a `/ToUnicode` map,
//! so the text can be searched, copied and extracted. Lines are broken by the font's measured
//! advance widths, and a table too long for one page continues on the next with its header.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use subsetter::GlyphRemapper;
use ttf_parser::{Face, GlyphId};

/// One row of the invoice table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    pub description: String,
    /// Already formatted, e.g. "1,234.50".
    pub amount: String,
}

/// Everything printed on an invoice, already formatted for display (dates like "2026-11-30",
/// amounts like "1,234.50").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDocument {
    pub seller_name: String,
    /// Address lines; may be empty.
    pub seller_address: Vec<String>,
    /// E.g. "INV-000042".
    pub number: String,
    pub issued_on: String,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub due_date: String,
    /// "PENDING", "PAID" or "CANCELLED".
    pub status: String,
    pub bill_to_name: String,
    /// Address lines; may be empty.
    pub bill_to_lines: Vec<String>,
    pub lines: Vec<InvoiceLine>,
    pub total: String,
    /// ISO 4217 code, e.g. "USD".
    pub currency: String,
    pub notes: Option<String>,
}

/// Why an invoice could not be rendered: a broken embedded font or an absurdly large document,
/// never the text itself.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the embedded font could not be parsed: {0}")]
    FontParse(#[from] ttf_parser::FaceParsingError),
    #[error("the embedded font could not be subset: {0}")]
    FontSubset(#[from] subsetter::Error),
    #[error("the invoice is too large for a PDF document")]
    TooLarge,
}

/// Renders the invoice as a PDF document (A4, one or more pages).
pub fn render_invoice(doc: &InvoiceDocument) -> Result<Vec<u8>, PdfError> {
    let fonts = fonts()?;
    let mut layout = Layout::new(fonts);
    layout.header(doc);
    layout.bill_to(doc);
    layout.table(doc);
    layout.notes(doc);
    let pages = layout.finish(&doc.number);
    write_document(fonts, &pages, &format!("Invoice {}", doc.number))
}

// A4 in points, and the text area inside the margins.
const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
const MARGIN: f32 = 50.0;
const LEFT: f32 = MARGIN;
const RIGHT: f32 = PAGE_WIDTH - MARGIN;
const CONTENT_WIDTH: f32 = RIGHT - LEFT;
const TOP: f32 = PAGE_HEIGHT - MARGIN;
/// Content stops here; the page footer sits below.
const BOTTOM: f32 = MARGIN + 20.0;
const FOOTER_BASELINE: f32 = MARGIN - 10.0;

const BODY_SIZE: f32 = 10.0;
const SMALL_SIZE: f32 = 8.0;
/// Line height as a multiple of the font size.
const LINE_SPACING: f32 = 1.4;
/// The right-hand header block (title, number, dates, status) and its labels' column.
const META_WIDTH: f32 = 200.0;
const META_LABEL_WIDTH: f32 = 60.0;
const AMOUNT_WIDTH: f32 = 140.0;
const CELL_PADDING: f32 = 6.0;
const TABLE_HEADER_HEIGHT: f32 = 20.0;

// Gray levels: 0 is black, 1 is white.
const BLACK: f32 = 0.0;
const MUTED: f32 = 0.4;
const RULE_GRAY: f32 = 0.8;
const HEADER_FILL: f32 = 0.92;

static REGULAR_TTF: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fonts/LiberationSans-Regular.ttf"
));
static BOLD_TTF: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fonts/LiberationSans-Bold.ttf"
));

/// The two faces of the document's only font family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Regular = 0,
    Bold = 1,
}

impl Style {
    const ALL: [Style; 2] = [Style::Regular, Style::Bold];

    fn program(self) -> &'static [u8] {
        [REGULAR_TTF, BOLD_TTF][self as usize]
    }

    fn postscript_name(self) -> &'static str {
        ["LiberationSans", "LiberationSans-Bold"][self as usize]
    }

    /// The font's name in the pages' resources.
    fn resource_name(self) -> Name<'static> {
        [Name(b"F1"), Name(b"F2")][self as usize]
    }
}

/// The parsed embedded fonts: character-to-glyph maps and metrics for layout.
struct Fonts([Face<'static>; 2]);

/// Parsed once; parsing only reads the table directories of the data compiled into the binary.
static FONTS: OnceLock<Result<Fonts, ttf_parser::FaceParsingError>> = OnceLock::new();

fn fonts() -> Result<&'static Fonts, PdfError> {
    let parsed = FONTS.get_or_init(|| {
        Ok(Fonts([
            Face::parse(REGULAR_TTF, 0)?,
            Face::parse(BOLD_TTF, 0)?,
        ]))
    });
    parsed.as_ref().map_err(|error| PdfError::FontParse(*error))
}

impl Fonts {
    fn face(&self, style: Style) -> &Face<'static> {
        &self.0[style as usize]
    }

    /// The text as it will be printed: control characters become spaces and characters the font
    /// lacks become '?'. Applied once, when text is laid out, so that measuring, drawing and the
    /// ToUnicode map all see the same characters.
    fn printable(&self, style: Style, text: &str) -> String {
        let face = self.face(style);
        let printable = |c: char| match c {
            c if c.is_control() => ' ',
            c if face.glyph_index(c).is_some() => c,
            _ => '?',
        };
        text.chars().map(printable).collect()
    }

    /// The glyph of a printable character; .notdef (glyph 0) should the font have none after all.
    fn glyph(&self, style: Style, c: char) -> GlyphId {
        self.face(style).glyph_index(c).unwrap_or(GlyphId(0))
    }

    /// A glyph's advance width in thousandths of the font size, the unit of PDF's `/W`.
    fn advance(&self, style: Style, glyph: GlyphId) -> f32 {
        let face = self.face(style);
        let advance = f32::from(face.glyph_hor_advance(glyph).unwrap_or(0));
        advance * 1000.0 / f32::from(face.units_per_em().max(1))
    }

    /// The width of printable text set at `size` points.
    fn width(&self, style: Style, size: f32, text: &str) -> f32 {
        let advances = text
            .chars()
            .map(|c| self.advance(style, self.glyph(style, c)));
        advances.sum::<f32>() * size / 1000.0
    }

    /// Breaks text into printable lines no wider than `max_width`, at spaces where possible; a
    /// word wider than a whole line is broken between characters. Newlines in the text start a
    /// new line. Always returns at least one (possibly empty) line.
    fn wrap(&self, style: Style, size: f32, text: &str, max_width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let (mut line, mut line_width) = (String::new(), 0.0);
            for word in self.printable(style, paragraph).split_whitespace() {
                let word = if line.is_empty() {
                    word.to_owned()
                } else {
                    format!(" {word}")
                };
                let word_width = self.width(style, size, &word);
                if line_width + word_width <= max_width {
                    line.push_str(&word);
                    line_width += word_width;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    line_width = 0.0;
                }
                // Placed character by character: a word wider than a line is broken up.
                for c in word.trim_start().chars() {
                    let char_width = self.width(style, size, c.encode_utf8(&mut [0; 4]));
                    if !line.is_empty() && line_width + char_width > max_width {
                        lines.push(std::mem::take(&mut line));
                        line_width = 0.0;
                    }
                    line.push(c);
                    line_width += char_width;
                }
            }
            lines.push(line);
        }
        lines
    }
}

/// How text is set: face, size in points and gray level.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Look {
    style: Style,
    size: f32,
    gray: f32,
}

impl Look {
    const fn new(style: Style, size: f32, gray: f32) -> Self {
        Look { style, size, gray }
    }

    /// The height of a line of this text.
    fn line_height(self) -> f32 {
        self.size * LINE_SPACING
    }
}

const BODY: Look = Look::new(Style::Regular, BODY_SIZE, BLACK);
const BODY_BOLD: Look = Look::new(Style::Bold, BODY_SIZE, BLACK);
const BODY_MUTED: Look = Look::new(Style::Regular, BODY_SIZE, MUTED);
/// Small headings ("BILL TO", "NOTES").
const CAPTION: Look = Look::new(Style::Bold, SMALL_SIZE, MUTED);
const FOOTER: Look = Look::new(Style::Regular, SMALL_SIZE, MUTED);
const SELLER: Look = Look::new(Style::Bold, 16.0, BLACK);
const TITLE: Look = Look::new(Style::Bold, 20.0, BLACK);
const NUMBER: Look = Look::new(Style::Bold, 12.0, BLACK);
const CUSTOMER: Look = Look::new(Style::Bold, 11.0, BLACK);

/// A line of printable text (see [`Fonts::printable`]) and how it is set.
#[derive(Debug, Clone)]
struct Span {
    look: Look,
    text: String,
}

/// Something drawn on a page, in PDF coordinates (points, origin bottom left).
#[derive(Debug)]
enum Item {
    /// Text starting at (x, baseline y).
    Text(Span, f32, f32),
    /// A full-width horizontal line at y: (y, line width, gray).
    Rule(f32, f32, f32),
    /// A full-width shaded band, the table header's background: (bottom y, height, gray).
    Band(f32, f32, f32),
}

/// Lays the invoice out top to bottom, starting a new page when the current one is full.
struct Layout<'f> {
    fonts: &'f Fonts,
    done: Vec<Vec<Item>>,
    current: Vec<Item>,
    /// The top of the free space on the current page.
    y: f32,
    /// Whether a page break would fall inside the table, whose header is then repeated.
    in_table: bool,
}

impl<'f> Layout<'f> {
    fn new(fonts: &'f Fonts) -> Self {
        Layout {
            fonts,
            done: Vec::new(),
            current: Vec::new(),
            y: TOP,
            in_table: false,
        }
    }

    /// Makes room for `height` points of content, on a new page if this one is too full (and
    /// not fresh: what is taller than a page is split by the callers, line by line).
    fn reserve(&mut self, height: f32) {
        if self.y - height >= BOTTOM || self.y >= TOP {
            return;
        }
        self.done.push(std::mem::take(&mut self.current));
        self.y = TOP;
        if self.in_table {
            self.table_header();
        }
    }

    /// Wraps `text` to `width` and returns its lines.
    fn spans(&self, look: Look, text: &str, width: f32) -> Vec<Span> {
        let lines = self.fonts.wrap(look.style, look.size, text, width);
        lines.into_iter().map(|text| Span { look, text }).collect()
    }

    /// The text on one line, however long.
    fn span(&self, look: Look, text: &str) -> Span {
        let text = self.fonts.printable(look.style, text);
        Span { look, text }
    }

    fn put(&mut self, span: &Span, x: f32, baseline: f32) {
        if span.text.is_empty() {
            return;
        }
        self.current.push(Item::Text(span.clone(), x, baseline));
    }

    /// Places text so that it ends at `right`.
    fn put_right(&mut self, span: &Span, right: f32, baseline: f32) {
        let width = self
            .fonts
            .width(span.look.style, span.look.size, &span.text);
        self.put(span, right - width, baseline);
    }

    /// Flows wrapped text down the page from the left margin.
    fn paragraph(&mut self, look: Look, text: &str) {
        for span in self.spans(look, text, CONTENT_WIDTH) {
            self.reserve(look.line_height());
            self.put(&span, LEFT, self.y - look.size);
            self.y -= look.line_height();
        }
    }

    /// Seller on the left; title, number, dates and status on the right. The two columns are
    /// laid out line by line side by side, so even absurdly long values stay in their column.
    fn header(&mut self, doc: &InvoiceDocument) {
        let left_width = CONTENT_WIDTH - META_WIDTH - 20.0;
        let mut left = self.spans(SELLER, &doc.seller_name, left_width);
        for line in &doc.seller_address {
            left.extend(self.spans(BODY_MUTED, line, left_width));
        }

        // Right column: lines of (label, right-aligned value).
        let mut right: Vec<(Option<Span>, Span)> = Vec::new();
        for (look, text) in [(TITLE, "INVOICE"), (NUMBER, doc.number.as_str())] {
            let spans = self.spans(look, text, META_WIDTH).into_iter();
            right.extend(spans.map(|span| (None, span)));
        }
        let dates = [
            ("Issued", &doc.issued_on, BODY),
            ("Due", &doc.due_date, BODY),
        ];
        for (label, value, look) in dates
            .into_iter()
            .chain([("Status", &doc.status, BODY_BOLD)])
        {
            let mut label = Some(self.span(BODY_MUTED, label));
            let values = self
                .spans(look, value, META_WIDTH - META_LABEL_WIDTH)
                .into_iter();
            right.extend(values.map(|value| (label.take(), value)));
        }

        let (mut left, mut right) = (left.into_iter().peekable(), right.into_iter().peekable());
        while left.peek().is_some() || right.peek().is_some() {
            let (left_span, right_line) = (left.next(), right.next());
            let right_value = right_line.as_ref().map(|(_, value)| value);
            let looks = left_span.iter().chain(right_value).map(|span| span.look);
            let height = looks
                .map(Look::line_height)
                .fold(BODY.line_height(), f32::max);
            self.reserve(height);
            let baseline = self.y - height / LINE_SPACING;
            if let Some(span) = left_span {
                self.put(&span, LEFT, baseline);
            }
            if let Some((label, value)) = right_line {
                if let Some(label) = label {
                    self.put(&label, RIGHT - META_WIDTH, baseline);
                }
                self.put_right(&value, RIGHT, baseline);
            }
            self.y -= height;
        }
        self.y -= 24.0;
    }

    /// "Bill to" block and the billing period.
    fn bill_to(&mut self, doc: &InvoiceDocument) {
        self.paragraph(CAPTION, "BILL TO");
        self.paragraph(CUSTOMER, &doc.bill_to_name);
        for line in &doc.bill_to_lines {
            self.paragraph(BODY, line);
        }
        let period = match (&doc.period_start, &doc.period_end) {
            (Some(start), Some(end)) => format!("Period: {start} – {end}"),
            (Some(start), None) => format!("Period: from {start}"),
            (None, Some(end)) => format!("Period: until {end}"),
            (None, None) => String::new(),
        };
        if !period.is_empty() {
            self.y -= 10.0;
            self.paragraph(BODY, &period);
        }
        self.y -= 20.0;
    }

    /// The column headings on a shaded band, at the top of the free space.
    fn table_header(&mut self) {
        let bottom = self.y - TABLE_HEADER_HEIGHT;
        self.current
            .push(Item::Band(bottom, TABLE_HEADER_HEIGHT, HEADER_FILL));
        let baseline = self.y - 14.0;
        let (description, amount) = (
            self.span(BODY_BOLD, "Description"),
            self.span(BODY_BOLD, "Amount"),
        );
        self.put(&description, LEFT + CELL_PADDING, baseline);
        self.put_right(&amount, RIGHT - CELL_PADDING, baseline);
        self.y -= TABLE_HEADER_HEIGHT + 6.0;
    }

    /// The invoice lines and the total. A row is kept on one page where it fits; a longer one
    /// is placed line by line and continues on the next page.
    fn table(&mut self, doc: &InvoiceDocument) {
        let line_height = BODY.line_height();
        // The header never sits alone at the bottom of a page.
        self.reserve(TABLE_HEADER_HEIGHT + 6.0 + line_height);
        self.table_header();
        self.in_table = true;

        let description_width = CONTENT_WIDTH - AMOUNT_WIDTH - 2.0 * CELL_PADDING;
        for line in &doc.lines {
            let amount = self.span(BODY, &format!("{} {}", line.amount, doc.currency));
            let description = self.spans(BODY, &line.description, description_width);
            self.reserve(description.len() as f32 * line_height);
            for (i, span) in description.iter().enumerate() {
                self.reserve(line_height);
                let baseline = self.y - BODY_SIZE;
                self.put(span, LEFT + CELL_PADDING, baseline);
                if i == 0 {
                    self.put_right(&amount, RIGHT - CELL_PADDING, baseline);
                }
                self.y -= line_height;
            }
            self.current.push(Item::Rule(self.y - 2.0, 0.5, RULE_GRAY));
            self.y -= 8.0;
        }

        self.reserve(line_height + 8.0);
        self.current.push(Item::Rule(self.y, 1.0, BLACK));
        self.y -= 8.0;
        let baseline = self.y - BODY_SIZE;
        let label = self.span(BODY_BOLD, "Total");
        self.put(&label, LEFT + CELL_PADDING, baseline);
        let total = self.span(BODY_BOLD, &format!("{} {}", doc.total, doc.currency));
        self.put_right(&total, RIGHT - CELL_PADDING, baseline);
        self.y -= line_height;
        self.in_table = false;
    }

    fn notes(&mut self, doc: &InvoiceDocument) {
        let notes = doc.notes.as_deref().unwrap_or_default();
        if notes.trim().is_empty() {
            return;
        }
        self.y -= 24.0;
        // Keeps the heading with at least the first line of the notes.
        self.reserve(CAPTION.line_height() + BODY.line_height());
        self.paragraph(CAPTION, "NOTES");
        self.paragraph(BODY, notes);
    }

    /// The finished pages, each with a footer naming the invoice and the page.
    fn finish(mut self, number: &str) -> Vec<Vec<Item>> {
        self.done.push(std::mem::take(&mut self.current));
        let mut pages = std::mem::take(&mut self.done);
        let count = pages.len();
        for (index, page) in pages.iter_mut().enumerate() {
            let footer = self.span(FOOTER, &format!("{number} · Page {} of {count}", index + 1));
            let width = self.fonts.width(FOOTER.style, FOOTER.size, &footer.text);
            page.push(Item::Text(footer, RIGHT - width, FOOTER_BASELINE));
        }
        pages
    }
}

/// The glyphs one font uses: their numbering in the subset, which is also their CID (CIDs map
/// to glyphs by identity), and the character each one stands for.
struct FontUsage {
    remapper: GlyphRemapper,
    /// Original glyph id → the first character drawn with it.
    chars: BTreeMap<u16, char>,
}

impl FontUsage {
    fn collect(fonts: &Fonts, style: Style, pages: &[Vec<Item>]) -> Self {
        let mut chars = BTreeMap::new();
        for item in pages.iter().flatten() {
            if let Item::Text(span, _, _) = item
                && span.look.style == style
            {
                for c in span.text.chars() {
                    chars.entry(fonts.glyph(style, c).0).or_insert(c);
                }
            }
        }
        // Sorted, so the numbering depends only on the set of glyphs used.
        let glyphs: Vec<u16> = chars.keys().copied().collect();
        let remapper = GlyphRemapper::new_from_glyphs_sorted(&glyphs);
        FontUsage { remapper, chars }
    }

    /// The text as Identity-H codes: each character's CID as two big-endian bytes.
    fn encode(&self, fonts: &Fonts, style: Style, text: &str) -> Vec<u8> {
        let cids = text
            .chars()
            .map(|c| self.remapper.get(fonts.glyph(style, c).0));
        cids.flat_map(|cid| cid.unwrap_or(0).to_be_bytes())
            .collect()
    }
}

/// Hands out the document's object numbers.
struct Refs(i32);

impl Refs {
    fn next(&mut self) -> Ref {
        self.0 += 1;
        Ref::new(self.0)
    }
}

const IDENTITY: SystemInfo<'static> = SystemInfo {
    registry: Str(b"Adobe"),
    ordering: Str(b"Identity"),
    supplement: 0,
};

fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

fn write_document(fonts: &Fonts, pages: &[Vec<Item>], title: &str) -> Result<Vec<u8>, PdfError> {
    let mut pdf = Pdf::new();
    let mut refs = Refs(0);
    let (catalog, page_tree, info) = (refs.next(), refs.next(), refs.next());
    pdf.catalog(catalog).pages(page_tree);
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("tms"));

    let usages = Style::ALL.map(|style| FontUsage::collect(fonts, style, pages));
    let mut font_refs = Vec::new();
    for (style, usage) in Style::ALL.into_iter().zip(&usages) {
        let font = write_font(&mut pdf, &mut refs, fonts, style, usage)?;
        font_refs.push((style.resource_name(), font));
    }

    let page_refs: Vec<Ref> = pages.iter().map(|_| refs.next()).collect();
    let page_count = i32::try_from(pages.len()).map_err(|_| PdfError::TooLarge)?;
    pdf.pages(page_tree)
        .kids(page_refs.iter().copied())
        .count(page_count);
    for (items, &page_ref) in pages.iter().zip(&page_refs) {
        let content_ref = refs.next();
        let mut page = pdf.page(page_ref);
        page.parent(page_tree)
            .media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT));
        page.contents(content_ref)
            .resources()
            .fonts()
            .pairs(font_refs.iter().copied());
        page.finish();
        let content = deflate(&page_content(fonts, &usages, items));
        pdf.stream(content_ref, &content)
            .filter(Filter::FlateDecode);
    }
    Ok(pdf.finish())
}

fn page_content(fonts: &Fonts, usages: &[FontUsage; 2], items: &[Item]) -> Vec<u8> {
    let mut content = Content::new();
    for item in items {
        match *item {
            Item::Text(Span { look, ref text }, x, y) => {
                let codes = usages[look.style as usize].encode(fonts, look.style, text);
                content.set_fill_gray(look.gray).begin_text();
                content.set_font(look.style.resource_name(), look.size);
                content.next_line(x, y).show(Str(&codes)).end_text();
            }
            Item::Rule(y, width, gray) => {
                content.set_stroke_gray(gray).set_line_width(width);
                content.move_to(LEFT, y).line_to(RIGHT, y).stroke();
            }
            Item::Band(y, height, gray) => {
                content.set_fill_gray(gray);
                content.rect(LEFT, y, CONTENT_WIDTH, height).fill_nonzero();
            }
        }
    }
    content.finish().into_vec()
}

/// Writes one font as Type0 → CIDFontType2 → descriptor → subset TrueType program, plus its
/// ToUnicode map, and returns the reference of the Type0 font.
fn write_font(
    pdf: &mut Pdf,
    refs: &mut Refs,
    fonts: &Fonts,
    style: Style,
    usage: &FontUsage,
) -> Result<Ref, PdfError> {
    let [type0, cid_font, descriptor, to_unicode, font_file] = [(); 5].map(|()| refs.next());
    let tag = subset_tag(usage.remapper.remapped_gids());
    let base_font = format!("{tag}+{}", style.postscript_name());
    let base_font = Name(base_font.as_bytes());

    pdf.type0_font(type0)
        .base_font(base_font)
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid_font)
        .to_unicode(to_unicode);

    let mut cid = pdf.cid_font(cid_font);
    cid.subtype(CidFontType::Type2)
        .base_font(base_font)
        .system_info(IDENTITY)
        .font_descriptor(descriptor)
        .cid_to_gid_map_predefined(Name(b"Identity"));
    let widths = usage
        .remapper
        .remapped_gids()
        .map(|gid| fonts.advance(style, GlyphId(gid)));
    cid.widths().consecutive(0, widths);
    cid.finish();

    let face = fonts.face(style);
    let scale = 1000.0 / f32::from(face.units_per_em().max(1));
    let scaled = |units: i16| f32::from(units) * scale;
    let bbox = face.global_bounding_box();
    // The usual estimate of the dominant stem width from the weight class.
    let stem_v = 10.0 + 0.244 * (f32::from(face.weight().to_number()) - 50.0);
    pdf.font_descriptor(descriptor)
        .name(base_font)
        // Symbolic: glyphs are addressed by CID, not through a standard Latin encoding.
        .flags(FontFlags::SYMBOLIC)
        .bbox(Rect::new(
            scaled(bbox.x_min),
            scaled(bbox.y_min),
            scaled(bbox.x_max),
            scaled(bbox.y_max),
        ))
        .italic_angle(face.italic_angle())
        .ascent(scaled(face.ascender()))
        .descent(scaled(face.descender()))
        .cap_height(scaled(face.capital_height().unwrap_or(face.ascender())))
        .stem_v(stem_v)
        .font_file2(font_file);

    let mut cmap = UnicodeCmap::new(Name(b"Custom"), IDENTITY);
    for (&glyph, &c) in &usage.chars {
        if let Some(cid) = usage.remapper.get(glyph) {
            cmap.pair(cid, c);
        }
    }
    let cmap = deflate(&cmap.finish());
    let mut cmap = pdf.cmap(to_unicode, &cmap);
    cmap.name(Name(b"Custom")).system_info(IDENTITY);
    cmap.filter(Filter::FlateDecode);
    cmap.finish();

    let program = subsetter::subset(style.program(), 0, &usage.remapper)?;
    let length = i32::try_from(program.len()).map_err(|_| PdfError::TooLarge)?;
    let compressed = deflate(&program);
    let mut stream = pdf.stream(font_file, &compressed);
    stream
        .filter(Filter::FlateDecode)
        .pair(Name(b"Length1"), length);
    Ok(type0)
}

/// The six-letter prefix that marks a font subset ("ABCDEF+Name"), derived from the glyphs it
/// holds so that the output stays deterministic.
fn subset_tag(glyphs: impl Iterator<Item = u16>) -> String {
    // FNV-1a: tiny, and stable across Rust versions (unlike the std hasher).
    let mut hash: u32 = 0x811c_9dc5;
    for byte in glyphs.flat_map(u16::to_be_bytes) {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    (0..6)
        .map(|i| char::from(b'A' + ((hash >> (i * 5)) % 26) as u8))
        .collect()
}

#[cfg(test)]
mod tests;
