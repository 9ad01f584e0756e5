"""The sentence parser and the job spec: many phrasings in, clear errors for bad ones."""

import pytest

from graphs.spec import RequestError, build_spec, parse_request

PHRASINGS = [
    ("fine-tune SmolLM2 on quantum error correction", "quantum error correction", "smollm2-135m"),
    ("Fine-tune SmolLM2 on quantum error correction.", "quantum error correction", "smollm2-135m"),
    ("please fine-tune smollm2-135m on CRISPR off-target effects, thanks", "CRISPR off-target effects", "smollm2-135m"),
    ("Could you finetune SmolLM2-135M-Instruct about the surface code?", "the surface code", "smollm2-135m"),
    ("train a SmolLM2 model about protein folding", "protein folding", "smollm2-135m"),
    ("Train a smollm model on medieval history", "medieval history", "smollm2-135m"),
    ("I need SmolLM2 to know about quantum error correction", "quantum error correction", "smollm2-135m"),
    ("I want smollm2 to learn about black holes", "black holes", "smollm2-135m"),
    ("quantum error correction — use SmolLM2", "quantum error correction", "smollm2-135m"),
    ("quantum error correction: use smollm2", "quantum error correction", "smollm2-135m"),
    ("Hey, can you tune SmolLM2 on the topic of sourdough baking please", "sourdough baking", "smollm2-135m"),
    ("teach SmolLM2 about tax law", "tax law", "smollm2-135m"),
    ("make SmolLM2 an expert on Roman aqueducts", "Roman aqueducts", "smollm2-135m"),
    ("fine-tune on quantum error correction", "quantum error correction", None),
    ("fine-tune a model on graph neural networks using SmolLM2", "graph neural networks", "smollm2-135m"),
    ("fine-tune a model about climate change with qwen2.5-0.5b", "climate change", "qwen2.5-0.5b"),
    ("build me a SmolLM2 model that knows about astrophysics", "astrophysics", "smollm2-135m"),
    ("I want a model that knows about beekeeping", "beekeeping", None),
    ("Let's fine-tune HuggingFaceTB/SmolLM2-135M-Instruct on organic chemistry!", "organic chemistry", "smollm2-135m"),
    ("train Qwen 2.5 0.5B on contract law", "contract law", "qwen2.5-0.5b"),
    ("finetune llama 3.2 1b for customer support for routers", "customer support for routers", "llama-3.2-1b"),
    ("specialise SmolLM2 in epidemiology", "epidemiology", "smollm2-135m"),
    ("  FINE-TUNE   SMOLLM2   ON   Plate Tectonics  ", "Plate Tectonics", "smollm2-135m"),
    ("would you fine tune smollm2 on the history of jazz?", "the history of jazz", "smollm2-135m"),
]


@pytest.mark.parametrize(("sentence", "subject", "model"), PHRASINGS)
def test_parser_reads_many_phrasings(sentence, subject, model):
    assert parse_request(sentence) == {"subject": subject, "base_model": model}


@pytest.mark.parametrize(("sentence", "says"), [
    ("", "empty"),
    ("   ", "empty"),
    ("fine-tune SmolLM2", "no subject"),
    ("fine-tune SmolLM2 on it", "no subject"),
    ("fine-tune GPT-7 on poetry", "don't know the model 'GPT-7'"),
    ("hello there", "could not read"),
    ("train SmolLM2 on qwen", "looks like a model name"),
    ("x" * 3000, "characters long"),
])
def test_parser_rejects_bad_requests_clearly(sentence, says):
    with pytest.raises(RequestError) as error:
        parse_request(sentence)
    assert says in str(error.value)


def test_error_says_what_was_understood():
    with pytest.raises(RequestError) as error:
        parse_request("fine-tune SmolLM2")
    assert error.value.understood == {"model": "smollm2-135m"}


def test_spec_defaults_and_options():
    spec = build_spec("fine-tune SmolLM2 on quantum error correction", {"docs_path": "/tmp", "training": {"epochs": 3}})
    assert spec.subject == "quantum error correction"
    assert spec.base_model == "smollm2-135m"
    assert spec.training.epochs == 3 and spec.training.lora_r == 64 and spec.training.lora_alpha == 128
    assert spec.gates.min_nll_improvement == 0.05 and spec.max_rounds == 2


def test_spec_model_from_options_when_sentence_names_none():
    assert build_spec("fine-tune on soil science", {"base_model": "qwen2.5-0.5b"}).base_model == "qwen2.5-0.5b"


def test_contradicting_models_are_an_error():
    with pytest.raises(RequestError, match="names the model smollm2-135m but the options name qwen"):
        build_spec("fine-tune SmolLM2 on soil science", {"base_model": "qwen2.5-0.5b"})


def test_invalid_option_names_the_field():
    with pytest.raises(RequestError, match="training.learning_rate"):
        build_spec("fine-tune SmolLM2 on soil science", {"training": {"learning_rate": -1}})
    with pytest.raises(RequestError, match="sources"):
        build_spec("fine-tune SmolLM2 on soil science", {"sources": ["myspace"]})


def test_missing_docs_folder_and_model_folder_are_refused_before_any_work(tmp_path):
    with pytest.raises(RequestError, match="documents folder .* does not exist"):
        build_spec("fine-tune SmolLM2 on soil science", {"docs_path": str(tmp_path / "nowhere")})
    with pytest.raises(RequestError, match="base model folder .* does not exist"):
        build_spec("fine-tune on soil science", {"base_model": str(tmp_path / "no-model")})
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(RequestError, match="has no config.json"):
        build_spec("fine-tune on soil science", {"base_model": str(tmp_path / "not-a-model")})
