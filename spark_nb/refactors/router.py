"""Which exact refactor an instruction asks for, if any.

    route("rename total to value", code)  ->  Refactor("rename", {"old": "total", "new": "value"})
    route("add docstrings", code)         ->  None: the model's job

An instruction is routed only when the whole of it (less politeness: "please", "for me", "in this cell") is one
of the phrasings below, so "remove the comments about X", "sort imports and add type hints" or "rename the
variable" go to the model. Names come from the instruction; a rename is routed only when the cell binds the old
name exactly once (as the kind said, in the function said), "call it NEW" only when the cell has one candidate,
f-strings only when the cell has `%` or `.format` to convert, logging only when it prints, a loop <-> comprehension
only when the cell has exactly one (of the kind named), a constant only when the instruction gives the number and
the name, a misspelt name only when one name the cell reads unbound has one nearest bound name (or the instruction
names it: "name 'totl' is not defined"). Being conservative is the point: a wrong exact edit is worse than asking
the model.
"""
from __future__ import annotations

import inspect
import keyword
import re
from dataclasses import dataclass, field

import libcst as cst

from . import comprehensions
from .base import RefactorError, parse
from .comments import remove_comments
from .comprehensions import comprehension_to_loop, loop_to_comprehension
from .constants import extract_constant, literal_number
from .debug import remove_debug
from .fstrings import to_fstrings
from .imports import remove_unused_imports, sort_imports, tidy_imports
from .rename import bindings, rename
from .to_logging import print_to_logging
from .typos import fix_misspelt_name, misspelt
from .wrap_main import has_script_code, wrap_main

REFACTORS = {
    "rename": rename,
    "sort_imports": sort_imports,
    "remove_unused_imports": remove_unused_imports,
    "tidy_imports": tidy_imports,
    "remove_debug": remove_debug,
    "remove_comments": remove_comments,
    "to_fstrings": to_fstrings,
    "print_to_logging": print_to_logging,
    "loop_to_comprehension": loop_to_comprehension,
    "comprehension_to_loop": comprehension_to_loop,
    "extract_constant": extract_constant,
    "fix_misspelt_name": fix_misspelt_name,
    "wrap_main": wrap_main,
}
_MODEL_FAMILY = {  # the built-in model's edit family for the same request (spark_nb.train.families)
    "sort_imports": "sort_imports", "remove_unused_imports": "sort_imports", "tidy_imports": "sort_imports",
    "remove_debug": "remove_debug", "to_fstrings": "to_fstring", "print_to_logging": "print_to_logging",
    "remove_comments": "remove_comments", "loop_to_comprehension": "loop_to_comprehension",
    "comprehension_to_loop": "comprehension_to_loop", "extract_constant": "extract_constant",
    "fix_misspelt_name": "fix_misspelt_name", "wrap_main": "wrap_main",
}


@dataclass(frozen=True)
class Refactor:
    """An exact refactor and its arguments, as the instruction gave them."""
    name: str  # a key of REFACTORS
    args: dict = field(default_factory=dict)

    def apply(self, code: str, **context) -> str:
        """The refactored cell, or a RefactorError. context: what the notebook knows beyond the cell,
        `used_elsewhere` (names other cells read) and `defined_elsewhere` (names other cells define); each
        refactor takes what concerns it."""
        fn = REFACTORS[self.name]
        accepted = inspect.signature(fn).parameters
        return fn(code, **self.args, **{k: v for k, v in context.items() if k in accepted})

    @property
    def family(self) -> str | None:
        """The model's edit family for the same request."""
        if self.name == "rename":
            return "rename_function" if self.args.get("kind") in ("function", "method", "class") else "rename_variable"
        return _MODEL_FAMILY.get(self.name)


# -- normalising the instruction ---------------------------------------------------------------------------------

_POLITE_HEAD = re.compile(
    r"^(?:(?:please|pls|plz|kindly|can you|could you|would you|will you|can u|could u|i want you to|"
    r"i'd like you to|i would like you to|i need you to|let's|lets|go ahead and|now|just|also|ok|okay|hey|bitte|"
    r"por favor|s'il (?:te|vous) pla[iî]t|stp|svp|refactor(?=\s*:))\b[,:]?\s*)+", re.I)
_POLITE_TAIL = re.compile(
    r"[,\s]*\b(?:please|pls|plz|thanks|thank you|thx|for me|in (?:this|the) (?:cell|code|file|snippet)|here|"
    r"everywhere(?: (?:it is|it's) used)?|and (?:update|fix) (?:its|all(?: its)?|the) (?:callers|uses|references|call sites)|"
    r"throughout|bitte|por favor|s'il (?:te|vous) pla[iî]t|stp|svp|danke|gracias|merci)$", re.I)


def normalise(instruction: str) -> str:
    """The instruction without surrounding politeness, punctuation and spacing (case kept: names need it)."""
    text = " ".join(instruction.split())
    while True:
        before = text
        text = text.strip(" .!?;")
        text = _POLITE_HEAD.sub("", text)
        text = _POLITE_TAIL.sub("", text)
        if text == before:
            return text


# -- phrasings ---------------------------------------------------------------------------------------------------

_Q = "[`'\"‘’“”]?"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
OLD, NEW, WITHIN = (f"{_Q}(?P<{g}>{_NAME}){_Q}" for g in ("old", "new", "within"))
_KIND_WORDS = {
    "variable": "variable", "var": "variable", "constant": "variable", "function": "function",
    "func": "function", "method": "method", "class": "class", "parameter": "parameter", "param": "parameter",
    "argument": "parameter", "arg": "parameter", "attribute": "attribute", "funktion": "function", "methode": "method",
    "klasse": "class", "funci[oó]n": "function", "clase": "class", "fonction": "function", "classe": "class",
    "m[ée]thode": "method", "m[ée]todo": "method",
}
_KIND = (r"(?:(?:local\s+|global\s+|module[- ]level\s+|top[- ]level\s+)?(?P<kind>"
         + "|".join(sorted(_KIND_WORDS, key=len, reverse=True)) + r")\s+)?")
_THE = r"(?:the\s+|a\s+|my\s+|die\s+|den\s+|das\s+|la\s+|el\s+|le\s+|l')?"
_ARROW = r"\s*(?:->|=>|→|⇒|-->)\s*"
_TO = rf"(?:\s+(?:to|into|as)\s+(?:be\s+)?|{_ARROW})"
_IN = (rf"(?:\s+(?:in|inside|within)\s+(?:the\s+)?(?:(?:function|method|class|def)\s+)?{WITHIN}"
       rf"(?:\s+(?:function|method|class))?(?:\(\))?)?")

_RENAMES = [
    rf"(?:rename|renaming|refactor-rename)\s+{_THE}{_KIND}{OLD}(?:\(\))?{_TO}{NEW}(?:\(\))?{_IN}",
    rf"{OLD}(?:\(\))?{_ARROW}{NEW}(?:\(\))?{_IN}",
    rf"rename:\s*{OLD}{_TO}{NEW}{_IN}",
    rf"change\s+the\s+name\s+of\s+{_THE}{_KIND}{OLD}\s+to\s+{NEW}{_IN}",
    rf"change\s+{_THE}{_KIND}{OLD}'s\s+name\s+to\s+{NEW}{_IN}",
    rf"{_THE}{_KIND}{OLD}\s+should\s+(?:be\s+)?(?:called|named|renamed(?:\s+to)?)\s+{NEW}(?:\s+instead)?{_IN}",
    rf"{_THE}{_KIND}{OLD}\s+is\s+(?:a\s+)?(?:bad|poor|terrible|confusing|unclear)\s+name[,;:]?\s+(?:call|name)\s+it\s+"
    rf"{NEW}",
    rf"use\s+(?:the\s+name\s+)?{NEW}\s+instead\s+of\s+{OLD}{_IN}",
    rf"call\s+{OLD}\s+{NEW}\s+instead{_IN}",  # not "call area twice"
    rf"(?:a\s+)?better\s+name\s+for\s+{_THE}{_KIND}{OLD}\s*(?:[:=,]|->|would\s+be|is)\s*{NEW}",
    rf"s/{OLD}/{NEW}/g?",
    # German, Spanish, French, Italian, Portuguese
    rf"(?:benenne|benennen\s+sie)\s+{_THE}{_KIND}{OLD}\s+(?:in|zu|nach)\s+{NEW}\s+um{_IN}",
    rf"{_THE}{_KIND}{OLD}\s+(?:in|zu|nach)\s+{NEW}\s+umbenennen",
    rf"umbenennen:?\s+{OLD}{_TO}{NEW}",
    rf"(?:renombra|renombrar|renombre|cambia\s+el\s+nombre\s+de|cambiar\s+el\s+nombre\s+de)\s+{_THE}{_KIND}{OLD}"
    rf"\s+(?:a|como|por|en)\s+{NEW}",
    rf"(?:renomme|renommer|renommez)\s+{_THE}{_KIND}{OLD}\s+en\s+{NEW}",
    rf"(?:rinomina|rinominare)\s+{_THE}{_KIND}{OLD}\s+(?:in|come|a)\s+{NEW}",
    rf"(?:renomeie|renomear|renomeia)\s+{_THE}{_KIND}{OLD}\s+(?:para|como)\s+{NEW}",
]
_CALL_IT = [  # no old name: routed only when the cell has one candidate
    rf"(?:call|name)\s+(?:it|this|that)\s+{NEW}(?:\s+instead)?",
    rf"(?:call|name)\s+(?:the|this|that)\s+(?P<kind>function|class)\s+{NEW}(?:\s+instead)?",
    rf"(?:the|this)\s+(?P<kind>function|class)\s+should\s+(?:be\s+)?(?:called|named)\s+{NEW}",
    rf"(?:rename|renaming)\s+(?:it|this|the\s+(?P<kind>function|class))\s+(?:to\s+)?{NEW}",
]

_REMOVE = (r"(?:remove|delete|strip(?:\s+out)?|drop|get\s+rid\s+of|take\s+out|eliminate|kill|nuke|erase|clear"
           r"(?:\s+out)?|clean\s+(?:up|out)|rm|purge|cut|scrub)")
_ALL = r"(?:\s+(?:all\s+(?:of\s+)?(?:the\s+)?|the\s+|any\s+|every\s+|those\s+|these\s+|my\s+|each\s+))?\s*"
_IMPORTS = r"(?:imports?|import\s+statements?|import\s+lines?|import\s+block|import\s+section)"
_UNUSED = r"(?:unused|unneeded|unnecessary|not\s+used|superfluous|dead)"
# Plural, or a mass noun: "remove the print" (which one?) and "remove the breakpoint" go to the model.
_PRINTS = r"(?:prints|print\s+statements|print\s+calls|print\(\)\s+calls|print\(\)s|printouts|print\s+lines)"
_ANY_PRINT = r"(?:prints?|print\s+statements?|print\s+calls?|print\(\)(?:\s+calls?)?|printing)"
_DEBUG = r"(?:(?:leftover|stray|old|temporary)\s+)?debug(?:ging)?"
_DEBUGGERS = (r"(?:breakpoints|breakpoint\(\)(?:\s+calls)?|pdb(?:\s+(?:calls|statements|traces|lines|imports))?|"
              r"set_trace(?:\(\))?(?:\s+calls)?|debugger\s+(?:calls|statements)|ipdb(?:\s+calls)?)")
_FSTR = r"(?:f-?strings?|f\s+strings?|fstrings?)"
_OLD_FMT = (r"(?:(?:the\s+|all\s+(?:the\s+)?)?(?:string\s+formatting|%[- ]?(?:formatting|format|style|strings?)|"
            r"percent[- ](?:formatting|format|style)|\.?format\(?\)?(?:\s+calls)?|str\.format(?:\(\))?(?:\s+calls)?|"
            r"old[- ]style\s+(?:string\s+)?formatting|%|old\s+formatting|format\s+strings))")
_LOGGING = (r"(?:(?:proper\s+)?logging|logging\s+calls|log\s+calls|logging\.info(?:\(\))?(?:\s+calls)?|"
            r"the\s+logging\s+module|logger\s+calls)")

_FAMILIES: list[tuple[str, dict, list[str]]] = [
    ("tidy_imports", {}, [
        rf"(?:clean\s*up|tidy(?:\s+up)?|optimi[sz]e|fix\s+up)\s+{_THE}{_IMPORTS}(?:\s+like\s+isort(?:\s+would|\s+does)?)?",
        rf"(?:clean\s*up|tidy(?:\s+up)?)\s+{_THE}{_IMPORTS}\s*[:;,-]\s*(?:drop|remove)\s+(?:the\s+)?{_UNUSED}\s+ones\s+"
        r"and\s+(?:order|sort)\s+(?:them|the\s+rest)(?:\s+alphabetically)?",
        rf"(?:sort|order|organi[sz]e)\s+{_THE}{_IMPORTS}\s+and\s+{_REMOVE}{_ALL}(?:{_UNUSED}(?:\s+ones|\s+{_IMPORTS})?|"
        rf"ones\s+(?:that\s+are\s+|which\s+are\s+)?{_UNUSED})",
        rf"{_REMOVE}{_ALL}{_UNUSED}\s+{_IMPORTS}\s+and\s+(?:sort|order|organi[sz]e)(?:\s+(?:them|the\s+rest|"
        rf"the\s+others|{_THE}{_IMPORTS}))?(?:\s+alphabetically)?",
        r"(?:sort\s+and\s+prune|prune\s+and\s+sort)\s+(?:the\s+)?imports",
    ]),
    ("remove_unused_imports", {}, [
        rf"{_REMOVE}{_ALL}{_UNUSED}\s+{_IMPORTS}",
        rf"{_REMOVE}{_ALL}{_IMPORTS}\s+(?:that\s+are\s+|which\s+are\s+)?(?:not|never|n't)\s+used",
        rf"{_REMOVE}{_ALL}{_IMPORTS}\s+(?:that\s+|which\s+)?(?:aren't|are\s+not|isn't|is\s+not)\s+(?:used|needed)",
        rf"{_REMOVE}{_ALL}{_IMPORTS}\s+(?:that\s+|which\s+)?(?:you|we)\s+(?:don't|do\s+not)\s+(?:use|need)",
        rf"prune\s+{_THE}{_IMPORTS}", r"unused\s+imports", r"(?:run\s+)?autoflake(?:\s+this|\s+it)?",
        r"(?:unbenutzte|ungenutzte|nicht\s+verwendete)\s+importe\s+entfernen",
        r"entferne\s+(?:die\s+)?(?:unbenutzten|ungenutzten|nicht\s+verwendeten)\s+importe",
        r"(?:elimina|eliminar|quita|quitar|borra|borrar)\s+(?:los\s+)?(?:imports|importaciones)\s+"
        r"(?:no\s+(?:usados|utilizados|usadas|utilizadas)|sin\s+usar)",
        r"(?:supprime|supprimer|supprimez|enl[eè]ve|enlever)\s+(?:les\s+)?(?:imports|importations)\s+inutilis[ée]e?s",
    ]),
    ("sort_imports", {}, [
        rf"(?:sort|order|organi[sz]e|alphabeti[sz]e|reorder|re-order|arrange|group)\s+{_THE}{_ALL}{_IMPORTS}"
        r"(?:\s+alphabetically|\s+properly|\s+like\s+isort(?:\s+would|\s+does)?)?",
        r"(?:run\s+)?isort(?:\s+(?:this|it|the\s+imports|the\s+cell|on\s+this|on\s+it))?",
        rf"{_IMPORTS}\s+(?:sorted|in\s+order)",
        rf"(?:sort\s+and\s+(?:dedupe|de-?duplicate)|(?:dedupe|de-?duplicate)\s+and\s+sort)\s+{_THE}{_IMPORTS}",
        r"import\s+sorting",
        r"(?:importe\s+sortieren|sortiere\s+(?:die\s+)?importe)",
        r"(?:ordena|ordenar)\s+(?:los\s+|las\s+)?(?:imports|importaciones)",
        r"(?:trie|trier|triez)\s+(?:les\s+)?(?:imports|importations)",
    ]),
    ("remove_comments", {}, [
        rf"{_REMOVE}{_ALL}(?:#\s+|code\s+)?comments(?:\s+lines)?"
        r"(?:\s+from\s+(?:the|this)\s+(?:code|cell|snippet|function))?",
        rf"{_REMOVE}\s+every\s+comment",
        rf"{_REMOVE}{_ALL}comments[,;:]?\s+(?:and\s+)?(?:keep|leave)\s+the\s+code\s+(?:as\s+it\s+is|as\s+is|unchanged|alone)",
        r"(?:no|without)\s+comments",
        r"(?:kommentare\s+entfernen|entferne\s+(?:alle\s+|die\s+)?kommentare|l[öo]sche\s+(?:alle\s+|die\s+)?kommentare)",
        r"(?:elimina|eliminar|quita|quitar|borra|borrar)\s+(?:todos\s+)?(?:los\s+)?comentarios",
        r"(?:supprime|supprimer|supprimez|enl[eè]ve|enlever|retire|retirer)\s+(?:tous\s+)?(?:les\s+)?commentaires",
    ]),
    ("remove_debug", {"debuggers": False}, [
        rf"{_REMOVE}{_ALL}(?:(?:{_DEBUG}|leftover|stray)\s+)?{_PRINTS}(?:\s+(?:used\s+)?for\s+debugging)?",
        rf"no\s+(?:more\s+)?{_PRINTS}",
        r"(?:entferne\s+(?:die\s+|alle\s+)?(?:prints|print-anweisungen|debug-?ausgaben)|prints\s+entfernen)",
        r"(?:elimina|eliminar|quita|quitar|borra|borrar)\s+(?:todos\s+)?(?:los\s+)?prints",
        r"(?:supprime|supprimer|supprimez|enl[eè]ve|enlever|retire|retirer)\s+(?:tous\s+)?(?:les\s+)?prints",
    ]),
    ("remove_debug", {"prints": False}, [
        rf"{_REMOVE}{_ALL}(?:{_DEBUG}\s+)?{_DEBUGGERS}",
    ]),
    ("remove_debug", {}, [
        rf"{_REMOVE}{_ALL}{_DEBUG}\s+(?:code|statements|output|lines|stuff|calls|junk|cruft)"
        r"(?:\s+before\s+committing)?",
        rf"{_REMOVE}{_ALL}(?:{_DEBUG}\s+)?(?:{_PRINTS}|{_DEBUGGERS})(?:,?\s+and\s+|\s*[,&/]\s*|\s+or\s+)"
        rf"(?:{_DEBUG}\s+)?(?:{_PRINTS}|{_DEBUGGERS})",
        r"debug\s+cleanup|clean\s+debug(?:\s+code)?|undebug(?:\s+this)?|de-?debug",
        r"(?:debug-?code\s+entfernen|entferne\s+(?:den\s+)?debug-?code)",
        r"(?:elimina|eliminar|quita|quitar)\s+(?:el\s+)?c[oó]digo\s+de\s+depuraci[oó]n",
        r"(?:supprime|supprimer|enl[eè]ve)\s+(?:le\s+)?code\s+de\s+d[ée]bogage",
    ]),
    ("to_fstrings", {}, [
        rf"(?:use|using|switch\s+to|prefer|migrate\s+to|move\s+to|go\s+with){_THE}\s*{_FSTR}"
        rf"(?:\s+(?:formatting|instead|everywhere|for\s+(?:formatting|the\s+strings|string\s+formatting)))?"
        rf"(?:\s+instead\s+of\s+{_OLD_FMT})?",
        rf"(?:convert|change|turn|rewrite|transform|port|moderni[sz]e|update|upgrade)(?:\s+(?:it|this|them|these|"
        rf"{_OLD_FMT}|(?:the\s+|all\s+(?:the\s+)?)?strings?|(?:the\s+|all\s+(?:the\s+)?)?string\s+formats?))?"
        rf"\s+(?:to|into|as|with|using)\s+{_THE}{_FSTR}",
        rf"replace\s+{_OLD_FMT}(?:\s+(?:and|or)\s+{_OLD_FMT})?\s+(?:with|by)\s+{_FSTR}",
        rf"{_OLD_FMT}{_ARROW}{_FSTR}",
        rf"{_FSTR}(?:\s+(?:this|it|them|these|everything|all\s+the\s+things))?", r"f-?string-?ify(?:\s+this|\s+it)?",
        rf"(?:to|->|→)\s*{_FSTR}",
        r"(?:run\s+)?flynt(?:\s+this|\s+it)?",
        r"modern(?:i[sz]e)?\s+(?:the\s+)?string\s+formatting", r"modern\s+string\s+formatting",
        rf"(?:verwende|benutze|nutze)\s+{_FSTR}", rf"{_FSTR}\s+verwenden", rf"in\s+{_FSTR}\s+umwandeln",
        rf"(?:usa|usar|utiliza|utilizar)\s+{_FSTR}", rf"(?:convierte|convertir)\s+(?:a|en)\s+{_FSTR}",
        rf"(?:utilise|utiliser|utilisez)\s+(?:des\s+)?{_FSTR}", rf"(?:convertis|convertir|convertissez)\s+en\s+{_FSTR}",
    ]),
    ("print_to_logging", {}, [
        rf"{_ANY_PRINT}{_ARROW}(?:logging|log\s+calls|logging\s+calls)",
        rf"{_ANY_PRINT}\s+to\s+(?:logging|log\s+calls|logging\s+calls)",
        rf"(?:use|switch\s+to|prefer|migrate\s+to|move\s+to)\s+{_THE}(?:{_LOGGING}|logger)"
        rf"(?:\s+instead\s+of\s+(?:{_ANY_PRINT}|stdout))?",
        rf"(?:log|logging)\s+instead\s+of\s+{_ANY_PRINT}",
        rf"(?:replace|convert|turn|change|swap|switch|rewrite|transform){_ALL}{_ANY_PRINT}\s+"
        rf"(?:with|to|into|for|by|as)\s+{_THE}{_LOGGING}",
        rf"switch\s+from\s+{_ANY_PRINT}\s+to\s+{_LOGGING}",
        r"(?:log|logging)\s+(?:these|the)\s+(?:messages|prints)\s+instead\s+of\s+printing\s+them",
        r"(?:verwende|benutze|nutze)\s+logging\s+statt\s+(?:print|prints)",
        r"(?:usa|usar|utiliza)\s+logging\s+en\s+(?:lugar|vez)\s+de\s+(?:print|prints)",
        r"(?:utilise|utiliser|utilisez)\s+logging\s+au\s+lieu\s+de\s+(?:print|prints)",
    ]),
]
# a comprehension and a loop that builds a collection, in the words of both directions
_COMP = (r"(?:(?:a|an|the|this|that|my)\s+)?(?:(?:one[- ]liner|single[- ]line)\s+)?"
         r"(?:(?:(?:list|set|dict(?:ionary)?)[- ]?)?(?:comprehensions?|comps?)|listcomps?|setcomps?|dictcomps?)")
_LOOP = (r"(?:(?:a|an|the|this|that|my)\s+)?(?:(?:explicit|plain|regular|normal|simple|ordinary|old[- ]style)\s+)?"
         r"(?:(?:append|appending|accumulator|accumulating)\s+)?(?:for[- ]?)?loops?")
_BUILDS = r"(?:\s+(?:that|which)\s+(?:builds|fills|appends\s+to|makes)\s+(?:the|a)\s+(?:collection|list|set|dict))?"
_APPENDS = r"(?:\s+(?:that\s+appends|with\s+(?:append|\.append(?:\(\))?|appends)))?"
_WHY = (r"(?:\s*,?\s+so\s+(?:that\s+)?(?:(?:it\s+is|it's)\s+easier\s+to|i\s+can)\s+(?:debug|read|follow|step\s+through)"
        r"(?:\s+it)?)?")
_ARROWISH = r"\s*(?:->|=>|→|⇒|-->|\bto\b)\s*"
# a number and the constant's name, both given
_VALUE = rf"{_Q}(?P<value>[-+]?(?:0[xob][0-9a-f_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:e[-+]?\d+)?j?)){_Q}"
_CONST = rf"{_Q}(?P<name>{_NAME}){_Q}"
_CONSTANT = (r"(?:a\s+|an\s+|the\s+)?(?:new\s+)?(?:(?:named|module[- ]level|global|top[- ]level)\s+)*"
             r"(?:constant|variable)")
_NUMBER_WORDS = (r"(?:(?:the\s+|this\s+|that\s+)?(?:magic\s+(?:number|value|constant)|hard[- ]?coded\s+(?:number|value)|"
                 r"literal|number|value|constant)\s+)?")
_CALLED = r"(?:(?:called|named)\s+)?"
# main(): "a main function", "main()", "def main()", with its guard
_MAIN = r"(?:an?\s+|the\s+)?(?:`?main\(\)`?(?:\s+function)?|`?main`?\s+function|def\s+main\(\))"
_GUARD = (r"(?:an?\s+|the\s+)?(?:`?if\s+__name__\s*==\s*['\"]__main__['\"]:?`?|__main__|__name__|main)(?:\s+guard|"
          r"\s+check|\s+block)?")

# a misspelt name, maybe named
_BAD = rf"{_Q}(?P<bad>{_NAME}){_Q}"
_FIX_IT = r"(?:\s*[,;:.-]?\s*(?:please\s+)?(?:fix|correct)(?:\s+it)?)"
_FAMILIES += [
    ("loop_to_comprehension", {}, [
        rf"(?:replace|rewrite|turn|convert|change|simplify|transform|refactor|collapse|condense|fold|make)\s+{_LOOP}"
        rf"{_BUILDS}\s+(?:(?:into|to|as|with|in)\s+)?{_COMP}",
        rf"{_COMP}\s+instead\s+of\s+(?:{_LOOP}|(?:a\s+)?for\s*\+\s*append|(?:an?\s+)?append\s+loop)",
        rf"(?:usa|usar|utiliza)\s+(?:una\s+)?(?:comprensi[oó]n\s+de\s+(?:listas?|conjuntos?|diccionarios?)|{_COMP})",
        rf"(?:convierte|convertir|transforma)\s+el\s+bucle(?:\s+for)?\s+en\s+(?:una\s+)?(?:comprensi[oó]n|{_COMP})"
        r"(?:\s+de\s+listas?)?",
        rf"(?:transforme|transformer|convertis|convertir|utilise|utiliser)\s+(?:la\s+boucle(?:\s+for)?\s+en\s+)?"
        r"(?:une\s+)?compr[ée]hension(?:\s+de\s+liste)?",
        rf"(?:use|using|prefer|switch\s+to|write\s+it\s+as|go\s+with)\s+{_COMP}(?:\s+instead(?:\s+of\s+{_LOOP})?)?",
        rf"{_LOOP}{_ARROWISH}{_COMP}",
        rf"(?:make|turn)\s+(?:it|this)\s+(?:into\s+)?{_COMP}",
        rf"make\s+(?:it|this)\s+more\s+pythonic\s+with\s+{_COMP}",
        rf"{_COMP}",
    ]),
    ("comprehension_to_loop", {}, [
        rf"(?:expand|unroll|rewrite|turn|convert|change|replace|transform|unfold|make|refactor|write|unpack)\s+{_COMP}"
        rf"(?:\s+(?:into|to|as|with|by))?\s+{_LOOP}{_APPENDS}{_WHY}",
        rf"(?:expand|unroll|unfold)\s+{_COMP}{_WHY}",
        rf"{_COMP}{_ARROWISH}{_LOOP}",
        rf"(?:use|write)\s+{_LOOP}\s+instead(?:\s+of\s+{_COMP})?",
        rf"(?:write|rewrite)\s+(?:it|this)\s+as\s+{_LOOP}(?:\s+instead(?:\s+of\s+{_COMP})?)?",
        rf"(?:schreib|schreibe)\s+(?:die\s+)?{_COMP}\s+als\s+(?:normale\s+)?for-?schleife",
        rf"(?:transforme|transforma|convierte)\s+{_COMP}\s+(?:em|en)\s+(?:um|un)\s+(?:la[çc]o|bucle)(?:\s+for)?",
        r"(?:an?\s+)?(?:explicit|plain)\s+(?:for[- ]?)?loops?",
        rf"no\s+(?:more\s+)?{_COMP}",
    ]),
    ("extract_constant", {}, [
        rf"(?:extract|pull|move|factor|lift|hoist|take|put)\s+{_NUMBER_WORDS}{_VALUE}(?:\s+out)?\s+(?:into|to|as)\s+"
        rf"{_CONSTANT}\s+{_CALLED}{_CONST}",
        rf"replace\s+{_NUMBER_WORDS}{_VALUE}\s+(?:with|by)\s+{_CONSTANT}\s+{_CALLED}{_CONST}",
        rf"(?:extract|pull|move|put)\s+(?:the\s+)?(?:[a-z]+\s+){{0,2}}{_VALUE}(?:\s+out)?\s+(?:in|into|to)\s+(?:an?\s+|the\s+)?"
        rf"(?!(?:a|an|the|new|named)\s){_CONST}\s+constant(?:\s+at\s+the\s+top)?",
        rf"(?:introduce|add|define|create|use)\s+{_CONSTANT}\s+{_CALLED}{_CONST}\s+(?:for|instead\s+of)\s+"
        rf"{_NUMBER_WORDS}{_VALUE}",
        rf"no\s+magic\s+numbers\s*[:;,-]?\s*name\s+{_NUMBER_WORDS}{_VALUE}\s+{_CONST}",
        rf"(?:extract|introduce|add|define)\s+(?:a\s+)?constant\s+{_CONST}\s*=\s*{_VALUE}",
        rf"(?:(?:the\s+)?magic\s+number\s+)?{_VALUE}{_ARROW}{_CONST}",
        rf"make\s+{_NUMBER_WORDS}{_VALUE}\s+(?:into\s+)?(?:a\s+)?(?:named\s+)?constant\s*\(\s*{_CONST}\s*\)",
        rf"make\s+{_NUMBER_WORDS}{_VALUE}\s+(?:into\s+)?(?:a\s+)?(?:named\s+)?constant\s+{_CALLED}{_CONST}",
        rf"const\s+{_CONST}\s+for\s+{_VALUE}",
        rf"name\s+(?:the\s+)?{_VALUE}\s*[:=]\s*{_CONST}",  # the sign: "name 2 variables" is no constant
    ]),
    ("fix_misspelt_name", {}, [
        r"fix\s+(?:the\s+|a\s+|this\s+|that\s+)?(?:typo|misspelling|misspelt\s+name|misspelled\s+name|nameerror|"
        r"name\s+error|spelling\s+mistake|undefined\s+name)(?:\s+in\s+(?:the|a)\s+(?:variable\s+)?name)?",
        rf"i\s+(?:misspelled|misspelt|mistyped)\s+{_BAD}{_FIX_IT}?",
        rf"{_BAD}\s+is\s+(?:spelled|spelt)\s+wrong(?:{_FIX_IT}|\s*[,;]?\s*fix\s+the\s+name)?",
        r"(?:corrige|corregir|corriger|corrigez|correggi|behebe|korrigiere)\s+(?:la\s+|el\s+|il\s+|den\s+|le\s+)?"
        r"(?:nameerror|errata|faute\s+de\s+frappe|tippfehler|typo|errore\s+di\s+battitura)(?:\s+im\s+variablennamen)?",
        r"fix\s+(?:the\s+)?nameerror\s*[:;,-]\s*a\s+name\s+is\s+(?:misspelt|misspelled|mistyped)",
        rf"there(?:'s|’s|\s+is)\s+a\s+typo\s+in\s+a\s+(?:variable\s+)?name{_FIX_IT}?",
        r"(?:correct|fix)\s+the\s+(?:misspelt|misspelled|mistyped)\s+(?:identifier|name|variable(?:\s+name)?)",
        rf"(?:nameerror\s*:\s*)?name\s+{_BAD}\s+is\s+not\s+defined{_FIX_IT}?",
        rf"{_BAD}\s+is\s+(?:not\s+defined|undefined){_FIX_IT}",
        rf"running\s+this\s+raises\s+(?:a\s+)?nameerror\s+(?:for|on|about)\s+{_BAD}{_FIX_IT}",
        rf"typo\s+somewhere{_FIX_IT}",
        rf"fix\s+(?:the\s+)?(?:nameerror|typo)\s+(?:for|on|of|in)\s+{_BAD}",
        rf"{_BAD}\s+is\s+(?:a\s+typo|misspelt|misspelled){_FIX_IT}?",
    ]),
    ("wrap_main", {}, [
        rf"(?:wrap|put|move|refactor)\s+(?:(?:it|this|everything|all\s+of\s+it|(?:the|this)\s+(?:top[- ]level|script|"
        rf"module[- ]level)\s+(?:code|body|statements)|(?:the|this)\s+(?:code|script(?:\s+code)?|script\s+body|"
        rf"module[- ]level\s+statements))\s+)?(?:in|into|inside)\s+(?:{_MAIN}|main)(?:\s+with\s+{_GUARD})?",
        rf"{_MAIN}",
        rf"(?:add|write|create|make)\s+{_MAIN}(?:\s+(?:and|with|plus)\s+{_GUARD})?",
        rf"(?:add|write)\s+{_GUARD}",
        rf"{_MAIN}\s+(?:pls|please)",
        r"def\s+main\s*\+\s*(?:an?\s+)?__main__\s+guard",
        r"script\s*(?:->|→|=>)\s*main\(\)",
        r"make\s+(?:this|it)\s+importable\s*[:;,-]\s*wrap\s+it\s+in\s+main\(\)",
    ]),
]
_COMPILED_RENAMES = [re.compile(p, re.I) for p in _RENAMES]
_COMPILED_CALL_IT = [re.compile(p, re.I) for p in _CALL_IT]
_COMPILED = [(name, args, [re.compile(p, re.I) for p in pats]) for name, args, pats in _FAMILIES]


MAX_LENGTH = 200  # an instruction naming an exact refactor is short; a longer one says more than that


def route(instruction: str, code: str, *, defined_elsewhere=()) -> Refactor | None:
    """The exact refactor `instruction` asks for on `code`, or None: the model's job (see the module docstring).
    defined_elsewhere: names earlier cells define, where a refactor's routing depends on them (a typo of `total`
    is one only where something binds `total`)."""
    if len(instruction) > MAX_LENGTH:
        return None
    text = normalise(instruction)
    for name, args, patterns in _COMPILED:
        m = next((m for p in patterns if (m := p.fullmatch(text))), None)
        if m:
            args = {**args, **{k: v for k, v in m.groupdict().items() if v is not None}}
            return Refactor(name, args) if _applies(name, code, text, args, defined_elsewhere) else None
    for p in _COMPILED_CALL_IT:  # first: "rename it to x" is not the rename of a name `it`
        m = p.fullmatch(text)
        if m:
            return _call_it(code, m.group("new"), _kind(m))
    for p in _COMPILED_RENAMES:
        m = p.fullmatch(text)
        if m:
            return _rename(code, m.group("old"), m.group("new"), _kind(m), m.groupdict().get("within"))
    return None


def _kind(m: re.Match) -> str | None:
    word = m.groupdict().get("kind")
    if word is None:
        return None
    return next(kind for pattern, kind in _KIND_WORDS.items() if re.fullmatch(pattern, word, re.I))


def _applies(name: str, code: str, text: str = "", args: dict | None = None, defined_elsewhere=()) -> bool:
    """Whether the cell has anything for a refactor whose request could also mean something generative: "use
    f-strings" on string concatenation, "use logging" on a cell with no print, are the model's."""
    if name == "to_fstrings":
        return "%" in code or ".format" in code
    if name == "print_to_logging":
        return re.search(r"\bprint\s*\(", code) is not None
    if name in ("loop_to_comprehension", "comprehension_to_loop"):  # exactly one, of the kind named if any (a
        # "list comprehension" is often any comprehension; a set or dict one is what it says)
        what = "loops" if name == "loop_to_comprehension" else "comprehensions"
        named = {w.lower().replace("ionary", "") for w in re.findall(r"(list|set|dict(?:ionary)?)(?=[- ]?comp)", text, re.I)}
        return comprehensions.count(code, what) == 1 and not named - {"list"} - comprehensions.kinds(code, what)
    if name == "extract_constant":  # whether the value occurs and the name is free is the refactor's to say
        return literal_number(args["value"]) is not None and _valid(args["name"])
    if name == "wrap_main":  # a cell of definitions has nothing to wrap: what was meant is the model's guess
        return has_script_code(code)
    if name == "fix_misspelt_name":  # one unbound name with one nearest bound name
        try:
            misspelt(code, args.get("bad"), defined_elsewhere)
        except RefactorError:
            return False
    return True


def _valid(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _rename(code: str, old: str, new: str, kind: str | None, within: str | None) -> Refactor | None:
    if not (_valid(old) and _valid(new)) or old == new:
        return None
    try:
        if len(bindings(code, old, kind=kind, within=within)) != 1:
            return None  # which one, or none at all: the model may know what was meant
    except RefactorError:
        return None
    args = {"old": old, "new": new}
    if kind:
        args["kind"] = kind
    if within:
        args["within"] = within
    return Refactor("rename", args)


def _call_it(code: str, new: str, kind: str | None) -> Refactor | None:
    """"call it NEW": the one name the cell defines at the top level (imports aside), or with a kind ("call the
    function NEW") its one function or class; anything else is ambiguous."""
    try:
        body = parse(code).body
    except RefactorError:
        return None
    defs = {s.name.value: "class" if isinstance(s, cst.ClassDef) else "function"
            for s in body if isinstance(s, (cst.FunctionDef, cst.ClassDef))}
    variables = {t.value: "variable" for s in body if isinstance(s, cst.SimpleStatementLine) for small in s.body
                 for t in _targets(small) if isinstance(t, cst.Name)}
    names = {k: v for k, v in {**variables, **defs}.items() if kind is None or v == kind}
    if len(names) != 1 or (kind is None and len({**variables, **defs}) != 1):
        return None
    (old, found), = names.items()
    return _rename(code, old, new, found, None)


def _targets(small):
    if isinstance(small, cst.Assign):
        return [t.target for t in small.targets]
    if isinstance(small, (cst.AnnAssign, cst.AugAssign)):
        return [small.target]
    return []
