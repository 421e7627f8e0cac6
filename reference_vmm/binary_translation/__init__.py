"""Binary translation (Adams & Agesen 2006 §3): guest kernel code from a translation cache, guest user code directly."""

from reference_vmm.binary_translation.monitor import BinaryTranslationVM, BinaryTranslationVMM
from reference_vmm.binary_translation.translator import RULES, TC_VA, Rule, TranslationCache

__all__ = ["RULES", "TC_VA", "BinaryTranslationVM", "BinaryTranslationVMM", "Rule", "TranslationCache"]
