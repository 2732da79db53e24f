"""Which edit family an instruction asks for, read from its words: the family whose meaning check the guard
applies to a model's edit (`spark_nb.train.families`).

    recognise("add docstrings")                  ->  "add_docstrings"
    recognise("strip all comments")              ->  "remove_comments"
    recognise("sort the imports and add types")  ->  None: two families, no one check fits both

Unlike `spark_nb.refactors.route`, which acts only on an instruction it reads whole, this reads loosely (synonyms,
terse phrasings, German, Spanish, French, Italian and Portuguese words), because a wrong guess costs little: the
guard then refuses an edit it should have applied, and the user sees why. What it must not do is pick one family
for a request that asks for more (the check would refuse the rest) or for something no family describes ("remove
the docstrings": there is no family for that, and "add docstrings"' check would be wrong), so it answers None
there and the guard only parses the result ("parses; not checked").

An instruction is cut into clauses at "and", commas, semicolons and "then"; in each clause the first rule below
that matches names its family; the instruction's family is the one family its clauses name, if there is one.
"""
from __future__ import annotations

import re

__all__ = ["recognise", "NO_FAMILY"]

NO_FAMILY = "?"  # a clause that asks for something no family describes: the whole instruction gets None

_REMOVE = (r"(?:rm|remove|removing|delete|deleting|strip|drop|get\s+rid\s+of|take\s+out|eliminate|erase|clear|purge|"
           r"clean(?:\s+up|\s+out)?|cut|scrub|kill|no|without|elimina|eliminar|quita|quitar|borra|borrar|supprime|"
           r"supprimer|supprimez|enl[eè]ve|enlever|retire|retirer|entferne|entfernen|l[öo]sche|rimuovi|rimuovere|"
           r"togli|remova|remover|apague|apagar)")
# a comment, not a column or field of that name in a dataframe
_COMMENT = (r"(?:comments?|comentarios?|commentaires?|kommenta?r?\w*|kommentier\w*|comment[io]|coment[aá]rios?)"
            r"(?!\s+(?:columns?|fields?|cols?)\b)")
_DOCSTRING = r"(?:doc[- ]?strings?|docs?\b|document(?:ation)?\b|dokumentation)"
# "types", never "type" alone: "convert the column to datetime type" asks for a dtype, not a hint
_TYPES = (r"(?:type[- ]?hint\w*|type\s+annotations?|annotations?\s+de\s+type|anotaci\w+\s+de\s+tipo|"
          r"anota\w+\s+de\s+tipo|typannotation\w*|typhinweis\w*|\btypes\b|typing)")
_PRINT = r"(?:prints?\b|print\s*\(\)|print\s+(?:statements?|calls?)|printing)"
_LOOP = (r"(?:loops?|schleifen?|bucles?|boucles?|cicl[oi]|la[çc]os?)")
_LOOP_NAME = (rf"(?:(?:explicit|plain|regular|normal|simple|ordinary)\s+(?:for[ -])?{_LOOP}|for[ -]{_LOOP}|"
              rf"{_LOOP}\s+for|normale\s+for-{_LOOP})")
_NAME = r"[`'\"]?[a-z_]\w*[`'\"]?"  # an identifier, perhaps quoted
_INSTEAD = r"(?:instead\s+of|rather\s+than)"
_COMP = r"(?:comprehensions?|list[- ]?comps?|comprensi[oó]n|compr[ée]hension|comprensione|compreens[aã]o)"
_RENAME = r"(?:\brenam\w*|renombr\w*|renomm\w*|umbenenn\w*|benenne|rinomin\w*|renome\w*|change\s+the\s+(?:\w+\s+)?name)"
_DATA = r"(?:columns?|cols?|keys?|labels?|axis|axes|index|fields?|files?|sheets?|legend|title)"  # data, not code

_RULES: list[tuple[str, str]] = [  # (family, pattern searched in one lowercased clause): the first match wins
    ("fix_syntax_error", r"syntax|sintaxis|syntaxe|sintassi|sintaxe|\beof\b|parse\s+error|error\s+while\s+parsing|"
                         r"(?:does\s*n[o']?t|won't|can't|cannot|fails?\s+to)\s+parse|"
                         r"indentation\s*error|unclosed|unbalanced|unterminated|"
                         r"missing\s+(?:colon|paren\w*|bracket|brace|quote)"),
    ("fix_misspelt_name", r"typo|misspel\w*|spel(?:led|t|ling)\s+wrong|wrong(?:ly)?\s+spel\w*|"
                          r"undefined\s+(?:name|variable)|name\s*error|is\s+not\s+defined|errata|"
                          r"faute\s+de\s+frappe|tippfehler|errore\s+di\s+battitura|erro\s+de\s+digita"),
    ("print_to_logging", rf"\blogging\b|\blogger\b|\blog\.\w+|\blog\b.*\b{_INSTEAD}\s+print"),
    ("comprehension_to_loop", rf"unroll|{_COMP}\s*(?:->|→|=>)\s*(?:an?\s+)?{_LOOP}|expand\b.*{_COMP}|"
                              rf"{_COMP}(?!.*\b{_INSTEAD}\b).*\b(?:{_LOOP_NAME}|(?:to|into|as|with|by)\b.*\b{_LOOP})|^{_LOOP_NAME}|"
                              rf"\b(?:use|prefer|want|with|as|into|to|in|als|em|en|como|in\s+einen?)\s+"
                              rf"(?:an?\s+|um\s+|une?\s+|eine?\s+)?{_LOOP_NAME}|no\s+(?:list\s+)?{_COMP}"),
    ("loop_to_comprehension", _COMP),
    ("to_fstring", r"\bf[- ]?strings?\b|flynt|modern\w*\s+(?:the\s+)?string\s+format"),
    (NO_FAMILY, rf"uncomment|\b{_REMOVE}\b.*(?:{_DOCSTRING}|{_TYPES})"),  # no family removes docstrings or hints
    ("remove_comments", rf"\b{_REMOVE}\b.*{_COMMENT}|commented[- ]out"),
    ("remove_debug", rf"\b{_REMOVE}\b.*(?:debug\w*|{_PRINT}|breakpoints?|pdb|set_trace)|debug\s+clean"),
    ("sort_imports", r"(?:sort|order|organi[sz]e|tidy|clean|fix|dedupe|de-?duplicate|alphabeti[sz]e|optimi[sz]e|prune|"
                     rf"group|{_REMOVE}|ordena|trie|sortiere|ordina|organiza|unused)\b.*\bimport|"
                     r"\bimport\w*\s+(?:sortieren|ordenar|trier)|\bimports?\b.*\b(?:mess\w*|fix\w*|sorted|in\s+order)|"
                     r"isort|autoflake"),
    (NO_FAMILY, rf"{_RENAME}.*\b{_DATA}\b"),  # a column or a file renamed is the data's business, not the code's
    ("rename_function", rf"{_RENAME}\b.*"
                        r"\b(?:function|method|class|def|func|funci[oó]n|fonction|funktion|m[ée]thode|metodo|"
                        r"klasse|clase|classe)\b|\b(?:call|name)\s+the\s+(?:function|method|class)\b|"
                        r"change\s+the\s+(?:function|method|class)\s+name|"
                        r"(?:function|method|class)\b.*\b(?:better|new|clearer|descriptive)\s+name"),
    ("rename_variable", rf"{_RENAME}|"
                        r"\bcall\s+(?:it|this|that)\b|should\s+be\s+(?:called|named)|"
                        r"(?:better|clearer|more\s+descriptive|descriptive)\s+names?|use\s+the\s+name|"
                        r"is\s+a\s+(?:poor|bad)\s+name|\bcall\s+\S+\s+(?:\S+\s+instead|something)|"
                        rf"^{_NAME}\s*(?:->|→|=>)\s*{_NAME}$|^s/[^/]+/[^/]+/"),
    ("extract_constant", r"magic\s+numbers?|\bconst(?:ants?)?\b|constante|konstante|costante|"
                         rf"^[-+]?\.?\d[\w.]*\s*(?:->|→|=>)\s*{_NAME}$"),
    # main as a function, not "the main title" or "the main loop"
    ("wrap_main", r"\bmain\s*\(\)|\bmain\s+(?:function|func|funktion|funci[oó]n|fonction|guard|block|entry)|"
                  r"(?:function|funci[oó]n|fonction|funktion|fun[çc][ãa]o)\s+main\b|"
                  r"__main__|__name__|\b(?:in|into|inside|a)\s+(?:a\s+)?main\b(?!\s+\w)"),
    ("add_comments", _COMMENT),
    ("add_type_hints", rf"{_TYPES}|annotat\w*|\bhints?\b|mypy|tipos?\b"),
    ("add_docstrings", rf"{_DOCSTRING}|dokumentier\w*|documenta\w*|docstring"),
    ("add_error_handling", r"error\s+handling|exception|handle\b|try\s*/\s*except|try[- ]except|\btry\b.*\bexcept|"
                           r"\bcatch|graceful|robust|guard\s+against|\b\w+error\b|manejo\s+de\s+errores|"
                           r"gestion\s+des\s+erreurs|fehlerbehandlung|gestione\s+degli\s+errori|"
                           r"tratamento\s+de\s+erros|excepci\w+"),
]
_COMPILED = [(family, re.compile(pattern)) for family, pattern in _RULES]
_CLAUSES = re.compile(r"\s+(?:and|und|y|et|e|plus|also|then)\s+|[,;&:]\s*")
_VERB = re.compile(rf"^\s*(?:{_REMOVE}|add|write|use|convert|replace)\b")
_RENAMES = {"rename_variable", "rename_function"}


def recognise(instruction: str) -> str | None:
    """The one edit family `instruction` asks for, or None (none, several, or one no family describes)."""
    found, verb = set(), ""
    for clause in _CLAUSES.split(instruction.lower().strip(" .!?")):
        family = _clause_family(clause)
        if family is None and verb:  # "remove comments and debug prints": the verb carries on
            family = _clause_family(f"{verb} {clause}")
        if family is not None:
            found.add(family)
        m = _VERB.match(clause)
        verb = m.group(0).strip() if m else verb
    if found == _RENAMES:  # "`f` should be called `g`, rename the function": one rename, its kind said once
        found = {"rename_function"}
    if len(found) != 1 or NO_FAMILY in found:
        return None
    return found.pop()


def _clause_family(clause: str) -> str | None:
    return next((family for family, pattern in _COMPILED if pattern.search(clause)), None)
