"""A study's own question, asked the way a reader would, answered by its findings (real abstract sentences)."""

from __future__ import annotations

import pytest

from tools.data.chunking import chunk_by_tokens
from tools.data.facts import passage_facts
from tools.data.qa_extractive import candidate_questions, document_context, findings_span
from tools.data.quality import verbatim_span
from tools.data.question_gate import question_problem
from tools.data.study import (
    aim_questions,
    inferred_role,
    open_question,
    section_questions,
    short_phrase,
    study_aim,
    study_anchor,
    study_questions,
)
from tools.sources.documents import Document

AIMS = [  # (aim sentence of a real abstract, the question a reader would ask)
    ("To study whether exercise during pregnancy reduces the risk of postnatal depression.",
     "Does exercise during pregnancy reduce the risk of postnatal depression?"),
    (("The aim of the study was to see whether or not balloon predilatation is necessary in transcatheter aortic "
     "valve replacement (TAVI)."),
     "Is balloon predilatation necessary in transcatheter aortic valve replacement (TAVI)?"),
    (("To determine whether there is a relationship between VEGF expression and renal vein invasion in stage pT3 "
     "renal cell carcinoma and to evaluate its prognostic value."),
     "Is there a relationship between VEGF expression and renal vein invasion in stage pT3 renal cell carcinoma?"),
    ("To determine the impact of surgical extirpation and radiation therapy for outcomes of EPSCC.",
     "What is the impact of surgical extirpation and radiation therapy for outcomes of EPSCC?"),
    (("The purpose of this study was to assess the results of transsphenoidal pituitary surgery in patients with "
     "Cushing's disease over a period of 18 years."),
     ("What are the results of transsphenoidal pituitary surgery in patients with Cushing's disease over a period of "
     "18 years?")),
    ("To examine the effects of irrelevant emotional material on working memory performance.",
     "What are the effects of irrelevant emotional material on working memory performance?"),
    (("We aimed to examine the relationship between knee extensor strength, dynamic stability, and functional "
     "ambulation."), ("What is the relationship between knee extensor strength, dynamic stability, and functional "
     "ambulation?")),
    (("This randomized controlled study addressed whether image guidance improved the clinical outcomes of joint "
     "injections."), "Did image guidance improve the clinical outcomes of joint injections?"),
    # "developed" describes the circulation; "predisposes" is the verb
    (("To evaluate whether a well developed collateral circulation predisposes to restenosis after percutaneous "
      "coronary intervention (PCI)."),
     ("Does a well developed collateral circulation predispose to restenosis after percutaneous coronary intervention "
     "(PCI)?")),
]

NO_QUESTION = [  # aims that do not read as one question: none rather than a broken one
    "To compare children's, parents' and physicians' perceptions of children's body size.",
    "The purpose of this study was to characterize and classify mesocolon invasion from gastric cancer.",
    ("To assess whether the diagnostic sensitivity of rCBF single-photon emission compute tomography (SPECT) "
    "could be increased."),
]


ANCHORS = [  # (a real abstract's opening, how questions name its study): aims worded in the many ways papers word them
    (("BACKGROUND: This study was undertaken to examine whether use of alcohol is related to the likelihood of "
     "risky sexual behaviors."),
     "the study that set out to examine whether use of alcohol is related to the likelihood of risky sexual behaviors"),
    (("OBJECTIVE: Our purpose in this study was to show that pyloric mucosal redundancy is a constant finding in "
     "infants with IHPS, to discuss its possible cause."),
     "the study that set out to show that pyloric mucosal redundancy is a constant finding in infants with IHPS"),
    ("BACKGROUND: This study aims at evaluating pancreas retransplantation outcome.",
     "the study that set out to evaluate pancreas retransplantation outcome"),
    (("OBJECTIVE: Therefore, we conducted this prospective study to compare the diagnostic ability of FDG-PET in "
     "patients with cervical cancer."),
     "the study that set out to compare the diagnostic ability of FDG-PET in patients with cervical cancer"),
    ("AIMS: In this study, parotid function was assessed in patients with locally advanced head and neck cancers.",
     "the study that set out to assess parotid function in patients with locally advanced head and neck cancers"),
    (("OBJECTIVE: Here, we explored the reading skills in participants who have undergone left cerebral "
     "hemispherectomy."),
     ("the study that set out to explore the reading skills in participants who have undergone left cerebral "
     "hemispherectomy")),
    (("BACKGROUND: The purpose of this study is to determine whether trauma training affects the post-operative "
     "difference in femoral version (DFV) following IMN."),  # "following" a preposition, "DFV" no pronoun
     ("the study that set out to determine whether trauma training affects the post-operative difference in "
     "femoral version (DFV) following IMN")),
    (("OBJECTIVE: To determine the likelihood of MMR defects (MSH2, MSH6, MLH1) in women with synchronous "
     "endometrial and ovarian cancer."),  # no cut inside the parentheses
     ("the study that set out to determine the likelihood of MMR defects (MSH2, MSH6, MLH1) in women with "
     "synchronous endometrial and ovarian cancer")),
    (("BACKGROUND: Although body dysmorphic disorder is classified as a nonpsychotic disorder, controversy exists "
     "as to whether BDD can present with psychotic features."),
     "the study that asked whether BDD can present with psychotic features"),
]

ANCHORS += [  # real PubMedQA openings that named no study before (a long whether-aim, an objective asked as a
    # question, an aim stated only by what the methods did)
    (("BACKGROUND: The aim of this study was to determine whether bone scans (BS) can be avoided if pelvis was "
     "included in CT thorax and abdomen to detect bony metastases from breast cancer."),
     ("the study that set out to determine whether bone scans (BS) can be avoided if pelvis was included in CT thorax "
     "and abdomen to detect bony metastases from breast cancer")),
    (("OBJECTIVE: Do endometrial polyps from pre- and post-menopausal women have similar immunohistochemical "
     "expression of oestrogen and progesterone receptors?"),
     ('the study that asked "Do endometrial polyps from pre- and post-menopausal women have similar '
     'immunohistochemical expression of oestrogen and progesterone receptors"')),
    (("BACKGROUND AND AIMS: In familial adenomatous polyposis, correlations between site of mutation and severity "
     "of disease are known.\n\nMETHODS: We examined 680 unrelated FAP families for germline mutations in the APC "
     "gene. Clinical information was obtained from 1256 patients."),
     "the study that examined 680 unrelated FAP families for germline mutations in the APC gene"),
]

NO_ANCHOR = [  # aims that lean on what the reader cannot see, and text that states no aim
    "OBJECTIVE: To assess the prevalence of this Streptococcus in the pregnant women.",
    "OBJECTIVE: The aim was to evaluate the effectiveness of our surgical strategy for acute aortic dissection.",
    "BACKGROUND: Laparoscopic sleeve gastrectomy is currently being performed with increasing frequency worldwide.",
    # a sentence that ends in a question mark is no question; the methods in the present tense describe no study
    ("BACKGROUND: One question regarding the treatment of metastatic spinal cord compression (MSCC) is whether "
     "elderly patients benefit from surgery in addition to radiotherapy?"),
    "PRESENTATION: We present the case of a 45-year-old female with unresectable gallbladder carcinoma.",
]


@pytest.mark.parametrize(("opening", "anchor"), ANCHORS)
def test_the_study_is_named_by_the_aim_its_text_states(opening: str, anchor: str) -> None:
    assert study_anchor("pubmed-123", passage_facts(opening)) == anchor


@pytest.mark.parametrize("opening", NO_ANCHOR)
def test_no_name_for_a_study_whose_aim_leans_on_context_or_is_not_stated(opening: str) -> None:
    assert study_anchor("pubmed-123", passage_facts(opening)) is None


def test_the_open_question_of_the_background_becomes_the_study_question() -> None:
    facts = passage_facts("BACKGROUND: Vitamin D deficiency is common in CKD patients. However, whether the serum TB "
                          "could be a biomarker of cardioembolic stroke is unclear.\n\nMETHODS: We enrolled 80 "
                          "patients.")
    assert open_question(facts) == "the serum TB could be a biomarker of cardioembolic stroke"
    assert study_questions(facts) == ["Could the serum TB be a biomarker of cardioembolic stroke?"]


@pytest.mark.parametrize("text", [
    # a second past verb after "and": two clauses, not one
    ("OBJECTIVE: We examined whether CIMT differed significantly among individuals with distinct phenotype and "
     "correlated significantly with traditional risk factors."),
])
def test_a_misread_clause_gives_no_study_question(text: str) -> None:
    assert study_questions(passage_facts(text)) == []


def test_a_participle_before_its_noun_is_not_the_verb_of_the_study_question() -> None:
    facts = passage_facts("BACKGROUND: It is not clear whether the K/DOQI recommended doses of ergocalciferol are "
                          "adequate for correction of VDDI.")
    asked = "Are the K/DOQI recommended doses of ergocalciferol adequate for correction of VDDI?"
    assert study_questions(facts) == [asked]


def test_a_long_aim_is_cut_where_a_phrase_ends() -> None:
    aim = ("investigate the diagnostic value of a half dose compared with a full dose of gadobenate dimeglumine in the "
           "assessment of synovitis or tenosynovitis in the wrist and finger joints in patients with early arthritis")
    assert short_phrase(aim) == ("investigate the diagnostic value of a half dose compared with a full dose of "
                                 "gadobenate dimeglumine")
    assert short_phrase("evaluate the relationship between knee extensor strength, postural stability, and disease "
                        "severity") == ("evaluate the relationship between knee extensor strength, postural "
                                        "stability, and disease severity")
    assert short_phrase("compare " + "very " * 30 + "long") is None  # no clean cut: no name
    # punctuation inside a term or a number is no clause boundary
    assert short_phrase("study the efficiency and safety of holmium:YAG laser lithotripsy for ureteral stones") == \
        "study the efficiency and safety of holmium:YAG laser lithotripsy for ureteral stones"
    assert short_phrase("assess outcomes in 1,200 patients, and their costs") == "assess outcomes in 1,200 patients"
    # never cut inside a that-clause or a wh-clause: it would be left unfinished; up to 30 words it names the
    # study whole, past that it names nothing
    aim = ("test the hypothesis that nurses' aides who were exposed to environmental tobacco smoke at home have more "
           "respiratory symptoms than other aides in the same hospitals")
    assert short_phrase(aim) == aim
    assert short_phrase(aim + " of the region during the two decades before the national smoking ban of 2007") is None
    assert short_phrase("determine to what extent the reduction of Chile's traffic fatalities and injuries during "
                        "2000-2012 was related to the police traffic enforcement increment registered after the "
                        "introduction of its 2005 traffic law reform") is None  # was cut: "… and injuries"
    # a comma before a year is part of a date
    assert short_phrase("studied 38 055 Medicare beneficiaries who received a new CIED between January 1, 2005, and "
                        "June 30, 2009") == ("studied 38 055 Medicare beneficiaries who received a new CIED between "
                                             "January 1, 2005, and June 30, 2009")


@pytest.mark.parametrize(("sentence", "question"), AIMS)
def test_aim_reads_as_the_study_question(sentence: str, question: str) -> None:
    aim = study_aim(passage_facts(f"OBJECTIVE: {sentence}"))
    assert aim is not None
    assert aim_questions(aim) == [question]
    assert question_problem(question) is None


@pytest.mark.parametrize("sentence", NO_QUESTION)
def test_unreadable_aim_gives_no_question(sentence: str) -> None:
    aim = study_aim(passage_facts(f"OBJECTIVE: {sentence}"))
    assert aim is None or aim_questions(aim) == []


ABSTRACT = (
    "OBJECTIVE: To study whether exercise during pregnancy reduces the risk of postnatal depression.\n\n"
    "DESIGN: Randomized controlled trial.\n\n"
    "SETTING: Trondheim and Stavanger University Hospitals, Norway.\n\n"
    "METHODS: Pregnant women were randomly assigned to a 12-week exercise programme or to standard antenatal care. "
    "The programme included aerobic activity, strength training and balance exercises three times a week. "
    "Women in the control group received the customary information from their midwife or general practitioner. "
    "Questionnaires were completed at inclusion, after the intervention and three months after birth. "
    "The Edinburgh Postnatal Depression Scale was used to measure symptoms of depression after birth.\n\n"
    "RESULTS: Fourteen of 379 women in the intervention group and 17 of 340 in the control group had an EPDS score "
    "of 10 or more (p=0.46). Four of 379 women in the intervention group and 8 of 340 in the control group had a "
    "score of 13 or more (p=0.25). Among women who did not exercise before pregnancy, the intervention group had a "
    "lower prevalence of high scores than the control group. Adherence to the exercise programme was 55% in the "
    "intervention group."
)


def test_the_study_question_is_answered_by_the_chunk_with_the_findings() -> None:
    """Across chunks: the aim is in the first chunk, the results in the last; the findings question is asked
    once, in the chunk that holds the results, and its answer is one span of the results, worded as a
    conclusion words it (without the p-values)."""
    chunks = chunk_by_tokens(Document("local", "exercise", "pubmed-123", ABSTRACT, "file://x"), max_tokens=120)
    assert len(chunks) >= 2
    context = document_context(chunks, "pubmed-123")
    assert context.aim_questions == ("Does exercise during pregnancy reduce the risk of postnatal depression?",)
    assert context.findings_chunk == chunks[-1].chunk_id
    asked = [(c, q) for c in chunks for q, _ in candidate_questions(c, "pubmed-123", context=context)
             if q.form == "findings"]
    assert [q.question for _, q in asked] == [
        "Does exercise during pregnancy reduce the risk of postnatal depression?",
        ("What were the main findings of the study that set out to study whether exercise during pregnancy reduces "
        "the risk of postnatal depression?")]
    chunk, question = asked[0]
    assert {c.chunk_id for c, _ in asked} == {chunks[-1].chunk_id} and verbatim_span(question.answer, chunk.text)
    assert question.answer.startswith("Four of 379 women in the intervention group and 8 of 340 in the control "
                                      "group had a score of 13 or more. Among women")
    assert question.answer.endswith("Adherence to the exercise programme was 55% in the intervention group.")
    # the results chunk names the study by its aim, though the aim is in another chunk
    sections = [q.question for q, _ in candidate_questions(chunks[-1], "pubmed-123", context=context)
                if q.form == "section"]
    assert "What did the study that set out to study whether exercise during pregnancy reduces the risk of " \
           "postnatal depression find?" in sections


def test_findings_prefer_the_conclusion() -> None:
    facts = passage_facts("RESULTS: Relapse occurred in 12 of 22 patients. The mean interval was 6 months.\n\n"
                          "CONCLUSIONS: Discontinuing treatment is followed by relapse in half of the patients.")
    assert [f.text for f in findings_span(facts)] == [
        "Discontinuing treatment is followed by relapse in half of the patients."]


def test_what_a_study_found_starts_at_its_first_finding_not_its_enrolment() -> None:
    results = ("RESULTS: We studied 122 patients who underwent emergency surgery of the aorta between January 1982 "
               "and December 1997. Overall, in-hospital mortality was 18.0%, and there was no significant difference "
               "between those who had coronary angiography on the day of surgery compared with those who had not. "
               "Mean follow-up was 25 months.")
    facts = passage_facts("OBJECTIVES: To study the relationship between coronary angiography and in-hospital "
                          f"mortality in patients undergoing emergency surgery of the aorta.\n\n{results}")
    study = study_anchor("pubmed-123", facts)
    found = {q.question: q.answer for q, _ in section_questions(facts, study)}
    assert found[f"What did {study} find?"].startswith("Overall, in-hospital mortality was 18.0%")
    assert [f.text[:20] for f in findings_span(facts)] == ["Overall, in-hospital", "Mean follow-up was 2"]
    # a results section of enrolment alone keeps it (nothing else answers)
    only = passage_facts("RESULTS: We studied 122 patients. Mean follow-up was 25 months.")
    assert len(findings_span(only)) == 2


def test_text_that_reports_no_study_has_no_context() -> None:
    text = ("The surface code is a topological quantum error-correcting code. It encodes one logical qubit in a "
            "lattice of physical qubits. Its threshold is about one percent.")
    chunks = chunk_by_tokens(Document("local", "sc", "Surface code", text, "file://x"))
    context = document_context(chunks, "Surface code")
    assert context.aim_questions == () and context.findings_chunk is None
    assert not [q for c in chunks for q, _ in candidate_questions(c, "Surface code", context=context)
                if q.form in ("findings", "section")]


def test_an_aim_is_never_cut_after_an_adjective_or_an_article():
    aim = ("The purpose of this study was to determine whether there is an association between skewed "
           "X-inactivation and recurrent spontaneous abortion in a large, well-defined sample of women with "
           "recurrent loss.")
    facts = passage_facts(f"OBJECTIVE: {aim}", "")
    anchor = study_anchor("pubmed 17403428", facts)
    assert anchor == ("the study that set out to determine whether there is an association between skewed "
                      "X-inactivation and recurrent spontaneous abortion")
    assert study_questions(facts) == [("Is there an association between skewed X-inactivation and recurrent "
                                      "spontaneous abortion?")]


def test_a_tutorial_that_states_a_purpose_is_no_study() -> None:
    """'The purpose of the encoding is to …' (the demo corpus's logical-qubits text) made a study of a tutorial:
    "What was the objective of the study 'Logical Qubits and Code Distance'?"."""
    text = ("A logical qubit is encoded in many physical qubits. The purpose of the encoding is to make the logical "
            "qubit far more reliable than any of the physical qubits that compose it. The distance of a code is the "
            "minimum weight of a logical operator.")
    chunks = chunk_by_tokens(Document("local", "lq", "Logical Qubits and Code Distance", text, "file://x"))
    context = document_context(chunks, "Logical Qubits and Code Distance")
    assert context.study is None
    assert not [q for c in chunks for q, _ in candidate_questions(c, "Logical Qubits and Code Distance",
                                                                 context=context) if q.form in ("findings", "section")]


@pytest.mark.parametrize("sentence", [
    "Our aim was to assess the effect of CPAP on sleep in IPF patients with OSA.",
    "The aim of this prospective, randomized study was to compare the hemodynamic performance of two valves.",
    "The purpose of the present study was to determine whether trauma training affects femoral version.",
])
def test_a_stated_aim_makes_an_unlabelled_sentence_the_objective(sentence: str) -> None:
    assert inferred_role(passage_facts(sentence)[0]) == "objective"
