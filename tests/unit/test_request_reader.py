"""The offline request reader against requests written the way people write them.

Each row: the sentence, the base model expected (None: none named), the subject, and the options said
in words. The table was written before the reader was tuned on it; the test asserts the rate (at least
95% of rows read exactly right) and prints every miss, so a regression shows which sentences broke."""

from __future__ import annotations

import pytest

from graphs.spec import build_spec, understood_line
from tools.intake.request_reader import RequestError, has_action, read_request

S = "smollm2-135m"
TABLE: list[tuple[str, str | None, str, dict]] = [
    # -- plain -----------------------------------------------------------------------------------
    ("fine-tune SmolLM2 on organic chemistry reaction mechanisms", S, "organic chemistry reaction mechanisms", {}),
    ("Fine-tune smollm2-135m on maritime law", S, "maritime law", {}),
    ("finetune qwen2.5-0.5b on Byzantine history", "qwen2.5-0.5b", "Byzantine history", {}),
    ("train SmolLM2 on the French revolution", S, "the French revolution", {}),
    ("Train TinyLlama on beekeeping", "tinyllama-1.1b", "beekeeping", {}),
    ("fine tune phi-3-mini on linear algebra", "phi-3-mini", "linear algebra", {}),
    ("fine-tune gemma-2-2b about wine making", "gemma-2-2b", "wine making", {}),
    ("tune SmolLM2-360M on soil microbiology", "smollm2-360m", "soil microbiology", {}),
    ("teach SmolLM2 about the Ottoman empire", S, "the Ottoman empire", {}),
    ("adapt qwen to radiology reports", "qwen2.5-0.5b", "radiology reports", {}),
    ("specialize SmolLM2 in pediatric nutrition", S, "pediatric nutrition", {}),
    ("fine-tune on Kubernetes networking", None, "Kubernetes networking", {}),
    ("train a model on sourdough fermentation", None, "sourdough fermentation", {}),
    ("Fine-tune Llama-3.2-1B-Instruct on legal contracts", "llama-3.2-1b", "legal contracts", {}),
    ("fine-tune meta-llama/Llama-3.2-3B-Instruct on tax law", "llama-3.2-3b", "tax law", {}),
    ("fine-tune Mistral-7B on cybersecurity incident response", "mistral-7b", "cybersecurity incident response", {}),
    ("retrain smollm2 on electric vehicle batteries", S, "electric vehicle batteries", {}),
    ("fine-tune SmolLM2 1.7B on semiconductor physics", "smollm2-1.7b", "semiconductor physics", {}),
    ("fine-tune qwen 2.5 1.5b on Japanese tea ceremony", "qwen2.5-1.5b", "Japanese tea ceremony", {}),
    ("train llama 3.2 3b about volcanoes", "llama-3.2-3b", "volcanoes", {}),
    # -- polite ----------------------------------------------------------------------------------
    ("Please fine-tune SmolLM2 on marine biology.", S, "marine biology", {}),
    ("Could you please fine-tune SmolLM2 on Renaissance painting? Thanks!", S, "Renaissance painting", {}),
    ("Would you mind training SmolLM2 on plant pathology, please", S, "plant pathology", {}),
    ("I'd like you to fine-tune qwen on accounting standards", "qwen2.5-0.5b", "accounting standards", {}),
    ("I would like to fine-tune SmolLM2 on glacier dynamics, thank you", S, "glacier dynamics", {}),
    ("Hi! Can you train SmolLM2 on Norse mythology please?", S, "Norse mythology", {}),
    ("Hello, could you kindly fine-tune SmolLM2 about antique clocks", S, "antique clocks", {}),
    ("Good morning, please train a SmolLM2 model on bird migration", S, "bird migration", {}),
    ("If possible, fine-tune SmolLM2 on hydroponics", S, "hydroponics", {}),
    ("please could you fine-tune SmolLM2 on ancient Greek pottery, thanks a lot", S, "ancient Greek pottery", {}),
    ("Would it be possible to fine-tune SmolLM2 on jazz harmony?", S, "jazz harmony", {}),
    ("Can you please teach SmolLM2 about orbital mechanics? Thank you very much", S, "orbital mechanics", {}),
    ("We would like you to train SmolLM2 on hospital logistics", S, "hospital logistics", {}),
    ("Kindly fine-tune qwen2.5-1.5b on insurance claims", "qwen2.5-1.5b", "insurance claims", {}),
    # -- casual and terse ------------------------------------------------------------------------
    ("can u finetune smollm on medieval castles thx", S, "medieval castles", {}),
    ("yo train smollm2 on skateboarding tricks", S, "skateboarding tricks", {}),
    ("ok so fine-tune smollm2 on crypto tax rules lol", S, "crypto tax rules", {}),
    ("finetune smollm2 on rust borrow checker pls", S, "rust borrow checker", {}),
    ("hey can you train qwen on my board game rules", "qwen2.5-0.5b", "my board game rules", {}),
    ("smollm2 on bonsai care", S, "bonsai care", {}),
    ("ft smollm2 on chess openings", S, "chess openings", {}),
    ("train on coffee roasting", None, "coffee roasting", {}),
    ("finetune: smollm2, topic: typography", S, "typography", {}),
    ("fine-tune smollm2 -> sailing navigation", S, "sailing navigation", {}),
    ("gonna need smollm2 trained on welding safety", S, "welding safety", {}),
    ("just finetune smollm2 on fly fishing ok?", S, "fly fishing", {}),
    ("lets fine tune smollm2 on speedrunning", S, "speedrunning", {}),
    ("pls train smollm on vintage synthesizers", S, "vintage synthesizers", {}),
    ("fine-tune smollm2 on poker odds asap", S, "poker odds", {}),
    ("train smollm2 on knitting patterns :)", S, "knitting patterns", {}),
    # -- goal-phrased ----------------------------------------------------------------------------
    ("SmolLM2 needs to get good at tax law, can you do that?", S, "tax law", {}),
    ("I need SmolLM2 to know about quantum error correction", S, "quantum error correction", {}),
    ("I want smollm2 to learn about black holes", S, "black holes", {}),
    ("make SmolLM2 an expert on Roman aqueducts", S, "Roman aqueducts", {}),
    ("turn qwen into an expert on supply chain management", "qwen2.5-0.5b", "supply chain management", {}),
    ("I want a model that knows about beekeeping", None, "beekeeping", {}),
    ("build me a SmolLM2 model that knows about astrophysics", S, "astrophysics", {}),
    ("I need a model that understands Swiss banking regulation", None, "Swiss banking regulation", {}),
    ("make me an expert model on viticulture", None, "viticulture", {}),
    ("I want SmolLM2 to be an expert in epidemiology", S, "epidemiology", {}),
    ("SmolLM2 should know everything about the Apollo program", S, "the Apollo program", {}),
    ("help SmolLM2 get better at SQL query optimisation", S, "SQL query optimisation", {}),
    ("I'd love a model that is good at organic chemistry", None, "organic chemistry", {}),
    ("get SmolLM2 good at answering questions about HVAC systems", S, "HVAC systems", {}),
    ("I need qwen to understand maritime insurance", "qwen2.5-0.5b", "maritime insurance", {}),
    ("create a model that knows the GDPR", None, "the GDPR", {}),
    ("we need a chatbot that knows about our refund policy", None, "our refund policy", {}),
    ("SmolLM2 must learn about Baroque music", S, "Baroque music", {}),
    ("Can SmolLM2 become an expert in Mayan astronomy?", S, "Mayan astronomy", {}),
    ("I want to make SmolLM2 understand railway signalling", S, "railway signalling", {}),
    ("give me a model that can answer questions about dental hygiene", None, "dental hygiene", {}),
    ("I'm trying to get SmolLM2 to know more about geothermal energy", S, "geothermal energy", {}),
    ("SmolLM2 has to master Kantian ethics", S, "Kantian ethics", {}),
    # -- model in a side remark ------------------------------------------------------------------
    ("I want a model that knows the GDPR inside out (SmolLM2 please)", S, "the GDPR", {}),
    ("fine-tune a model on graph neural networks using SmolLM2", S, "graph neural networks", {}),
    ("fine-tune a model about climate change with qwen2.5-0.5b", "qwen2.5-0.5b", "climate change", {}),
    ("train a model on bird song (use qwen)", "qwen2.5-0.5b", "bird song", {}),
    ("fine-tune on medieval medicine, base model SmolLM2", S, "medieval medicine", {}),
    ("fine-tune on Arctic ecology - SmolLM2 is fine", S, "Arctic ecology", {}),
    ("teach a model about coral reefs; I'd prefer qwen", "qwen2.5-0.5b", "coral reefs", {}),
    ("fine-tune on cheese making (model: smollm2-360m)", "smollm2-360m", "cheese making", {}),
    ("train something on pottery glazes, with SmolLM2 as the base", S, "pottery glazes", {}),
    ("fine-tune on fusion reactors, based on qwen2.5", "qwen2.5-0.5b", "fusion reactors", {}),
    ("fine-tune a model on origami, SmolLM2 would be great", S, "origami", {}),
    ("make a model that knows Icelandic sagas (TinyLlama)", "tinyllama-1.1b", "Icelandic sagas", {}),
    ("train on forest fire prediction starting from SmolLM2", S, "forest fire prediction", {}),
    ("fine-tune on horse breeding on top of qwen2.5-1.5b", "qwen2.5-1.5b", "horse breeding", {}),
    # -- colon and dash forms --------------------------------------------------------------------
    ("smollm2: organic chemistry reaction mechanisms", S, "organic chemistry reaction mechanisms", {}),
    ("quantum error correction — use SmolLM2", S, "quantum error correction", {}),
    ("quantum error correction: use smollm2", S, "quantum error correction", {}),
    ("SmolLM2 - marine engine maintenance", S, "marine engine maintenance", {}),
    ("qwen2.5-0.5b: Scandinavian furniture design", "qwen2.5-0.5b", "Scandinavian furniture design", {}),
    ("Topic: lichen taxonomy. Model: SmolLM2.", S, "lichen taxonomy", {}),
    ("subject: bridge engineering, model: qwen", "qwen2.5-0.5b", "bridge engineering", {}),
    ("rare earth mining – SmolLM2", S, "rare earth mining", {}),
    ("SmolLM2 — medieval siege warfare", S, "medieval siege warfare", {}),
    ("fine-tune SmolLM2: Greek philosophy", S, "Greek philosophy", {}),
    ("fine-tune: watch repair (smollm2)", S, "watch repair", {}),
    ("smollm2 -- crop rotation", S, "crop rotation", {}),
    # -- typos in the model name -----------------------------------------------------------------
    ("fine-tune smol lm2 on solar panels", S, "solar panels", {}),
    ("fine-tune SmolLM-2 on urban planning", S, "urban planning", {}),
    ("train smolm2 on wine tasting", S, "wine tasting", {}),
    ("fine-tune smollm-2-135m on stamp collecting", S, "stamp collecting", {}),
    ("fine-tune SmoLLM2 on 3D printing", S, "3D printing", {}),
    ("train smol-lm on lighthouse history", S, "lighthouse history", {}),
    ("fine-tune SmolLM 2 360M on wind turbines", "smollm2-360m", "wind turbines", {}),
    ("fine-tune qwen-2.5 on bookkeeping", "qwen2.5-0.5b", "bookkeeping", {}),
    ("fine-tune qwen2,5 0.5b on fermentation", "qwen2.5-0.5b", "fermentation", {}),
    ("fine-tune tiny llama on model railways", "tinyllama-1.1b", "model railways", {}),
    ("fine-tune smollm2 135m instruct on mushroom foraging", S, "mushroom foraging", {}),
    ("fine-tune smollmv2 on kite surfing", S, "kite surfing", {}),
    ("train Smollm2-135M on Antarctic exploration", S, "Antarctic exploration", {}),
    ("fine-tune llama3.2 on customer support for routers", "llama-3.2-1b", "customer support for routers", {}),
    # -- subjects in other scripts ---------------------------------------------------------------
    ("fine-tune SmolLM2 on квантовая механика", S, "квантовая механика", {}),
    ("train SmolLM2 on 有机化学反应机理", S, "有机化学反应机理", {}),
    ("fine-tune SmolLM2 on αρχαία ελληνική φιλοσοφία", S, "αρχαία ελληνική φιλοσοφία", {}),
    ("fine-tune SmolLM2 on الفقه الإسلامي", S, "الفقه الإسلامي", {}),
    ("teach qwen about 日本の城", "qwen2.5-0.5b", "日本の城", {}),
    ("smollm2: история России", S, "история России", {}),
    ("please fine-tune SmolLM2 on 한국 전통 음악, thanks", S, "한국 전통 음악", {}),
    ("fine-tune SmolLM2 on תלמוד בבלי", S, "תלמוד בבלי", {}),
    ("train SmolLM2 on हिंदी व्याकरण", S, "हिंदी व्याकरण", {}),
    ("fine-tune SmolLM2 on Ελληνική μυθολογία in 2 epochs", S, "Ελληνική μυθολογία", {"training": {"epochs": 2}}),
    ("I need SmolLM2 to know about 中医药", S, "中医药", {}),
    ("fine-tune SmolLM2 on économie française", S, "économie française", {}),
    ("fine-tune SmolLM2 on Straßenbahn-Geschichte", S, "Straßenbahn-Geschichte", {}),
    ("fine-tune SmolLM2 on ภาษาไทย", S, "ภาษาไทย", {}),
    # -- options said in words -------------------------------------------------------------------
    ("fine-tune SmolLM2 on contract law in 2 epochs", S, "contract law", {"training": {"epochs": 2}}),
    ("fine-tune SmolLM2 on contract law with a rank of 8", S, "contract law", {"training": {"lora_r": 8}}),
    ("train SmolLM2 on virology from PubMed and Wikipedia", S, "virology", {"sources": ["pubmed", "wikipedia"]}),
    ("fine-tune SmolLM2 on our product manual using the files in ./docs", S, "our product manual",
     {"docs_path": "./docs"}),
    ("fine-tune SmolLM2 on optics, learning rate 1e-4", S, "optics", {"training": {"learning_rate": 1e-4}}),
    ("fine-tune SmolLM2 on string theory for 3 epochs with lr 2e-4", S, "string theory",
     {"training": {"epochs": 3, "learning_rate": 2e-4}}),
    ("train SmolLM2 on galaxy formation from arXiv only", S, "galaxy formation", {"sources": ["arxiv"]}),
    ("fine-tune SmolLM2 on company policies from the documents in ~/policies", S, "company policies",
     {"docs_path": "~/policies"}),
    ("fine-tune SmolLM2 on tax law with rank 32 and alpha 64", S, "tax law",
     {"training": {"lora_r": 32, "lora_alpha": 64}}),
    ("fine-tune SmolLM2 on Roman law, batch size 4, 1 epoch", S, "Roman law",
     {"training": {"batch_size": 4, "epochs": 1}}),
    ("fine-tune SmolLM2 on gene editing using PubMed, at most 40 documents", S, "gene editing",
     {"sources": ["pubmed"], "budget": {"max_documents": 40}}),
    ("fine-tune SmolLM2 on Mars geology from wikipedia in two epochs", S, "Mars geology",
     {"sources": ["wikipedia"], "training": {"epochs": 2}}),
    ("fine-tune SmolLM2 on the Hanseatic league from https://example.org/hansa", S, "the Hanseatic league",
     {"urls": ["https://example.org/hansa"]}),
    ("fine-tune SmolLM2 on our API from local documents", S, "our API", {"sources": ["local"]}),
    ("fine-tune SmolLM2 on lab safety using my files in ./safety", S, "lab safety", {"docs_path": "./safety"}),
    ("fine-tune SmolLM2 on pension rules, max 200 steps", S, "pension rules", {"training": {"max_steps": 200}}),
    ("fine-tune SmolLM2 on audio codecs with no extra rounds", S, "audio codecs", {"max_rounds": 0}),
    ("fine-tune SmolLM2 on pottery with a learning rate of 0.0003", S, "pottery",
     {"training": {"learning_rate": 3e-4}}),
    ("fine-tune SmolLM2 on enzyme kinetics from PubMed, arXiv and Wikipedia", S, "enzyme kinetics",
     {"sources": ["pubmed", "arxiv", "wikipedia"]}),
    ("fine-tune SmolLM2 on sea shanties and merge the adapter", S, "sea shanties", {"merge": True}),
    ("fine-tune SmolLM2 on drone regulations, 600 examples max", S, "drone regulations",
     {"budget": {"max_examples": 600}}),
    ("fine-tune SmolLM2 on wetland birds with up to 100 documents from the web", S, "wetland birds",
     {"budget": {"max_documents": 100}, "sources": ["web"]}),
    ("fine-tune SmolLM2 on hydrology, 4 epochs, rank 4, lr=5e-4", S, "hydrology",
     {"training": {"epochs": 4, "lora_r": 4, "learning_rate": 5e-4}}),
    ("use the docs in ./manuals to fine-tune SmolLM2 on printer repair", S, "printer repair",
     {"docs_path": "./manuals"}),
    ("from PubMed, fine-tune SmolLM2 on vaccine adjuvants", S, "vaccine adjuvants", {"sources": ["pubmed"]}),
    ("fine-tune ./models/my-base on tidal energy", "./models/my-base", "tidal energy", {}),
    ("fine-tune the model in /opt/models/base on reef fish", "/opt/models/base", "reef fish", {}),
    ("fine-tune SmolLM2 on legal writing using ./briefs", S, "legal writing", {"docs_path": "./briefs"}),
    # -- more mixed styles -----------------------------------------------------------------------
    ("Let's fine-tune HuggingFaceTB/SmolLM2-135M-Instruct on organic chemistry!", S, "organic chemistry", {}),
    ("would you fine tune smollm2 on the history of jazz?", S, "the history of jazz", {}),
    ("  FINE-TUNE   SMOLLM2   ON   Plate Tectonics  ", S, "Plate Tectonics", {}),
    ("I was wondering if you could fine-tune SmolLM2 on cloud formation", S, "cloud formation", {}),
    ("Is it possible to train qwen on Brazilian tax law?", "qwen2.5-0.5b", "Brazilian tax law", {}),
    ("fine-tune SmolLM2 on everything about honeybees", S, "honeybees", {}),
    ("train SmolLM2 on the topic of cave diving", S, "cave diving", {}),
    ("fine-tune SmolLM2 on documents about pipeline corrosion", S, "pipeline corrosion", {}),
    ("fine-tune SmolLM2 on 'organic chemistry reaction mechanisms'", S, "organic chemistry reaction mechanisms", {}),
    ('train SmolLM2 on "the Silk Road"', S, "the Silk Road", {}),
    ("fine-tune SmolLM2 on cats, dogs and rabbits", S, "cats, dogs and rabbits", {}),
    ("fine-tune SmolLM2 on training data quality", S, "training data quality", {}),
    ("fine-tune SmolLM2 on help desk scripts", S, "help desk scripts", {}),
    ("fine-tune qwen on the history of the mistral wind", "qwen2.5-0.5b", "the history of the mistral wind", {}),
    ("fine-tune on the phi coefficient in statistics", None, "the phi coefficient in statistics", {}),
    ("fine-tune SmolLM2 on Python packaging (pip, wheels)", S, "Python packaging (pip, wheels)", {}),
    ("fine-tune SmolLM2 on COVID-19 epidemiology", S, "COVID-19 epidemiology", {}),
    ("fine-tune SmolLM2 on C++ templates", S, "C++ templates", {}),
    ("fine-tune SmolLM2 on U.S. constitutional law", S, "U.S. constitutional law", {}),
    ("I'm a nurse; fine-tune SmolLM2 on wound care", S, "wound care", {}),
    ("For my thesis, fine-tune SmolLM2 on peatland carbon", S, "peatland carbon", {}),
    ("fine-tune SmolLM2 on bicycle repair. Thanks in advance!", S, "bicycle repair", {}),
    ("Fine-tune SmolLM2 on Dutch grammar 🙏", S, "Dutch grammar", {}),
    # -- written after the reader was tuned on the rows above, and read right first time (40 of 40) -----

    ("fine-tune SmolLM2 on Icelandic fishing quotas", S, "Icelandic fishing quotas", {}),
    ("could u train qwen on Brazilian jiu-jitsu rules?", "qwen2.5-0.5b", "Brazilian jiu-jitsu rules", {}),
    ("Please teach TinyLlama about the Peloponnesian war, thanks!", "tinyllama-1.1b", "the Peloponnesian war", {}),
    ("I need a model that can answer questions about HIPAA compliance", None, "HIPAA compliance", {}),
    ("SmolLM2 should become an expert on coffee chemistry", S, "coffee chemistry", {}),
    ("train smollm2 on bridge inspection reports in 4 epochs",
     S, "bridge inspection reports", {"training": {"epochs": 4}}),
    ("fine-tune on semiconductor lithography (smollm2-360m please)", "smollm2-360m", "semiconductor lithography", {}),
    ("smollm2 — Persian poetry", S, "Persian poetry", {}),
    ("finetune smol-lm2 on lunar geology from arxiv", S, "lunar geology", {"sources": ["arxiv"]}),
    ("I'd like SmolLM2 to learn about Ethiopian cuisine", S, "Ethiopian cuisine", {}),
    ("hey, fine tune qwen2.5 on HVAC maintenance, rank 16, lr 3e-4",
     "qwen2.5-0.5b", "HVAC maintenance", {"training": {"lora_r": 16, "learning_rate": 3e-4}}),
    ("fine-tune SmolLM2 on the Treaty of Westphalia using the files in ./treaties",
     S, "the Treaty of Westphalia", {"docs_path": "./treaties"}),
    ("fine-tune SmolLM2 on 漢字の歴史", S, "漢字の歴史", {}),
    ("train SmolLM2 on Византийская империя from wikipedia", S, "Византийская империя", {"sources": ["wikipedia"]}),
    ("make qwen an expert in Argentine tango", "qwen2.5-0.5b", "Argentine tango", {}),
    ("Could you train a model on municipal zoning law? Qwen would be good.",
     "qwen2.5-0.5b", "municipal zoning law", {}),
    ("fine-tune llama-3.2-1b on airline baggage policies", "llama-3.2-1b", "airline baggage policies", {}),
    ("we want SmolLM2 to know our internal wiki from the documents in ./wiki",
     S, "our internal wiki", {"docs_path": "./wiki"}),
    ("pls finetune smollm2 on nft scams kthx", S, "nft scams", {}),
    ("SmolLM2, learn about deep sea vents", S, "deep sea vents", {}),
    ("teach smollm2 everything about cricket rules", S, "cricket rules", {}),
    ("fine-tune SmolLM2 on antibiotic resistance from PubMed only",
     S, "antibiotic resistance", {"sources": ["pubmed"]}),
    ("train smollm2 for 1 epoch on typography", S, "typography", {"training": {"epochs": 1}}),
    ("qwen: Korean honorifics", "qwen2.5-0.5b", "Korean honorifics", {}),
    ("I want to fine-tune SmolLM2 on the history of Venice", S, "the history of Venice", {}),
    ("fine-tune SmolLM2 on αλχημεία", S, "αλχημεία", {}),
    ("can you make a SmolLM2 that knows about Scottish whisky", S, "Scottish whisky", {}),
    ("fine-tune SmoILM2 on dental implants", S, "dental implants", {}),
    ("train SmolLM2 360m on bird watching with a rank of 4 and 3 epochs",
     "smollm2-360m", "bird watching", {"training": {"lora_r": 4, "epochs": 3}}),
    ("Train a qwen model on library cataloguing", "qwen2.5-0.5b", "library cataloguing", {}),
    ("fine-tune SmolLM2 on railway timetables, please and thank you", S, "railway timetables", {}),
    ("fine-tune SmolLM2 on نحو اللغة العربية", S, "نحو اللغة العربية", {}),
    ("Get qwen good at Excel formulas", "qwen2.5-0.5b", "Excel formulas", {}),
    ("fine-tune SmolLM2 on solar eclipses with learning rate 0.0001",
     S, "solar eclipses", {"training": {"learning_rate": 1e-4}}),
    ("i need smollm to understand GDPR fines, can you do it?", S, "GDPR fines", {}),
    ("fine-tune SmolLM2 on carbon capture from PubMed and arXiv, at most 30 documents",
     S, "carbon capture", {"sources": ["pubmed", "arxiv"], "budget": {"max_documents": 30}}),
    ("build a model on mycology using SmolLM2", S, "mycology", {}),
    ("fine-tune phi-3 on logic puzzles", "phi-3-mini", "logic puzzles", {}),
    ("fine-tune SmolLM2 on pharmacokinetics — 2 epochs, rank 8",
     S, "pharmacokinetics", {"training": {"epochs": 2, "lora_r": 8}}),
    ("SmolLM2 needs to be good at reading ECGs", S, "reading ECGs", {}),
    # -- misses found by trying more sentences, fixed with words added to the lists --------------
    ("fine-tune SmolLM2 on sourdough, and also use wikipedia", S, "sourdough", {"sources": ["wikipedia"]}),
    ("Is there any way you could get SmolLM2 up to speed on Welsh grammar?", S, "Welsh grammar", {}),
]


def _reading(sentence: str) -> tuple[str | None, str, dict] | str:
    try:
        read = read_request(sentence)
    except RequestError as error:
        return f"RequestError: {error}"
    return read.base_model, read.subject, read.options


def test_the_table_is_big_and_varied():
    assert len(TABLE) >= 150
    assert len({row[0] for row in TABLE}) == len(TABLE)


def test_at_least_95_percent_of_real_requests_are_read_right(capsys):
    misses = []
    for sentence, model, subject, options in TABLE:
        got = _reading(sentence)
        if got != (model, subject, options):
            misses.append(f"{sentence!r}\n    expected {(model, subject, options)}\n    got      {got}")
    rate = 1 - len(misses) / len(TABLE)
    with capsys.disabled():
        print(f"\nrequest reader: {len(TABLE) - len(misses)}/{len(TABLE)} right ({rate:.1%}); misses:")
        print("\n".join(misses) or "  none")
    assert rate >= 0.95, "\n".join(misses)


@pytest.mark.parametrize(("sentence", "says"), [
    ("дообучи SmolLM2 на квантовой механике", "but not what to do"),
    ("entrena un modelo sobre química orgánica", "but not what to do"),
    ("organic chemistry reaction mechanisms", "but not what to do"),
    ("fine-tune SmolLM2 on \ud800 chemistry", "malformed text"),
    ("hello there", "could not read"),
    ("fine-tune GPT-7 on poetry", "don't know the model 'GPT-7'"),
    ("fine-tune SmolLM2 please", "no subject"),
])
def test_what_the_reader_cannot_act_on_is_said_clearly(sentence, says):
    with pytest.raises(RequestError, match=says):
        read_request(sentence)


def test_a_foreign_request_names_the_model_and_words_understood():
    with pytest.raises(RequestError) as error:
        read_request("дообучи SmolLM2 на квантовой механике")
    assert error.value.understood["model"] == S
    assert "на квантовой механике" in error.value.understood["subject"]
    assert "fine-tune smollm2-135m on" in str(error.value)


def test_every_door_tells_fine_tuning_apart_from_other_messages():
    assert has_action("SmolLM2 needs to get good at tax law")
    assert has_action("can u finetune smollm on castles")
    assert not has_action("how is it going?")
    assert not has_action("what models do I have")


def test_the_understood_line_says_model_subject_sources_and_options(tmp_path):
    spec = build_spec("fine-tune SmolLM2 on organic chemistry reaction mechanisms from local documents "
                      "in 4 epochs with a rank of 8")
    assert understood_line(spec) == ("fine-tune smollm2-135m on 'organic chemistry reaction mechanisms' "
                                     "from local documents (4 epochs, LoRA rank 8)")
    docs = tmp_path / "docs"
    docs.mkdir()
    spec = build_spec(f"fine-tune qwen on tides using the files in {docs}")
    assert understood_line(spec) == f"fine-tune qwen2.5-0.5b on 'tides' from the documents in {docs}"
    assert understood_line(build_spec("fine-tune on tides")).endswith("from sources chosen for the subject")


def test_options_given_explicitly_win_over_options_said_in_words():
    spec = build_spec("fine-tune SmolLM2 on tides in 2 epochs with a rank of 8", {"training": {"epochs": 5}})
    assert spec.training.epochs == 5 and spec.training.lora_r == 8


def test_the_api_takes_any_script_and_refuses_malformed_text_with_a_400(home):
    from fastapi.testclient import TestClient

    from agent.api import PREFIX, create_app
    from agent.service import JobService
    from agent.settings import resolve_settings

    client = TestClient(create_app(JobService(resolve_settings({"home": str(home)})), "t"))
    auth = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    for subject in ("квантовая механика", "有机化学", "αρχαία φιλοσοφία", "الفقه الإسلامي"):
        made = client.post(f"{PREFIX}/jobs", json={"request": f"fine-tune SmolLM2 on {subject}"}, headers=auth)
        assert made.status_code == 201
        assert made.json()["understood"].startswith(f"fine-tune smollm2-135m on '{subject}'")
    bad = client.post(f"{PREFIX}/jobs", content=b'{"request": "fine-tune SmolLM2 on \\ud800 chemistry"}', headers=auth)
    assert bad.status_code == 422 and "valid string" in bad.json()["error"]  # not echoed back: no 500


def test_malformed_text_from_python_gets_a_clear_error_and_a_question(home):
    from agent import FineTuner
    from agent.clarify import clarifying_question

    with pytest.raises(RequestError, match="malformed text") as error:
        FineTuner(home=home, user="alice").submit("fine-tune SmolLM2 on \ud800 chemistry")
    assert "plain text" in clarifying_question(error.value)
