from tfgal.attack.pixel_attack import INITS, OnePixelAttack
