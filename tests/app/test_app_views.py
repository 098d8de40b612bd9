"""The small HTML pieces of the page (l2c_explorer.app.views), without a server or a browser."""

from __future__ import annotations

from html.parser import HTMLParser

from l2c_explorer.app import views


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each figcaption."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.captions: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_caption = tag == "figcaption"

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)


def parsed(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


QUESTION = {"a": 3, "b": 17, "kind": "merge", "text": "Are these two groups one category?", "groups": [0, 4],
            "path_a": "Keble_character07/img_03.png", "path_b": "Keble_character12/sub dir/o'brien <1>.png"}
URL_A = "gradio_api/file=/work/thumbnails/0a1b2c.webp"
URL_B = "gradio_api/file=/work/thumbnails/3d4e5f.webp"


def test_question_images_are_named_by_their_file_name_only():
    """The folder an image sits in may be its category: neither caption nor alt text may give it away."""
    html = views.question_html(QUESTION, URL_A, URL_B)
    tags = parsed(html)
    images = [attrs for tag, attrs in tags.tags if tag == "img"]
    assert [img["alt"] for img in images] == ["img_03.png", "o'brien <1>.png"]
    assert tags.captions == ["img_03.png", "o'brien <1>.png"]
    assert "Keble_character" not in html and "sub dir" not in html
    assert [img["data-index"] for img in images] == ["3", "17"]
    # Windows-style separators too
    windows = parsed(views.question_html({**QUESTION, "path_a": "Keble_character07\\img_03.png"}, URL_A, URL_B))
    assert windows.captions[0] == "img_03.png"


def test_a_question_image_can_be_enlarged_on_the_page():
    """Each image is the summary of a <details> (a click shows it large, the page's CSS makes that an overlay);
    the large image is the same file from the app: no other address, no script."""
    html = views.question_html(QUESTION, URL_A, URL_B)
    tags = parsed(html)
    names = [tag for tag, _ in tags.tags]
    assert names.count("details") == 2 and names.count("summary") == 2 and names.count("img") == 2
    for k in range(2):  # details > summary > img, in that order, for each image
        at = [i for i, n in enumerate(names) if n == "details"][k]
        assert names[at:at + 3] == ["details", "summary", "img"]
        assert "l2c-zoom" in tags.tags[at][1]["class"]
    assert [attrs["src"] for tag, attrs in tags.tags if tag == "img"] == [URL_A, URL_B]
    assert "script" not in names and not any(a.startswith("on") for _, attrs in tags.tags for a in attrs)
    assert "http" not in html
    question = tags.tags[0][1]
    assert question["data-a"] == "3" and question["data-b"] == "17"


def test_no_question_left():
    html = views.question_html(None, "", "")
    assert "No question left" in html and "<img" not in html
